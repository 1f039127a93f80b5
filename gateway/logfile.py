"""The gateway's own log file, <gateway dir>/gateway.log, so a technician has one to read
(and `diag` can say why a stopped gateway stopped). Size-bounded by rotation (5 files of
2 MiB at most). The gateway never logs a secret (tokens, keys): what is logged here is what
the console shows."""

from __future__ import annotations

import logging
import logging.handlers
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_NAME = "gateway.log"
MAX_BYTES = 2 * 1024 * 1024
BACKUPS = 4
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOGGER = "fleetloop"


def path(gateway_dir: Path) -> Path:
    return gateway_dir / FILE_NAME


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """Every file it opens, the first and each after a rotation, is made 0600."""

    def _open(self):  # type: ignore[no-untyped-def]  # logging's own signature
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


@contextmanager
def attached(file: Path, max_bytes: int = MAX_BYTES) -> Iterator[None]:
    """Log what the `fleetloop` loggers emit (the level `gateway run --log-level` sets, INFO by
    default) to `file` while the block runs."""
    logger = logging.getLogger(LOGGER)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        # 0600: it names devices and the site's hosts
        handler = _PrivateRotatingFile(file, maxBytes=max_bytes, backupCount=BACKUPS,
                                       encoding="utf-8")
    except OSError as exc:  # a full or read-only disk: the gateway runs on, logging to stderr
        logger.error("cannot write the log file %s (%s)", file, exc.strerror or exc)
        yield
        return
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def tail(file: Path, lines: int = 50, max_bytes: int = 256 * 1024) -> list[str]:
    """The last `lines` lines of `file` (reading at most its last `max_bytes`); [] if absent."""
    try:
        with open(file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and text:
        text = text[1:]  # the first line read is cut
    return text[-lines:]
