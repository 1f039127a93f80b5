"""`fleetloop fw flash`: a provisioned image onto a real board (with mpremote), or a full bundle
into slot a of an image on this computer.

To a board: `mpremote connect PORT fs cp -r <the image's parts> :` copies the image to the
board's filesystem root (the board runs with its flash root as the image); `--romfs` also runs
`romfs deploy fw/a.img`, which writes slot a into the board's ROMFS partition, where the
board's MicroPython (>= 1.25, built with ROMFS) maps it and runs the bytecode in place. The
device's own data/ is never copied: a board makes its own.

To a host image (`--to DIR`): the bundle is verified and installed as slot a
(fwtool.slots.install_slot), lib/ and identity.json's fw follow, and `fleetloop device run`
boots it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from protocol import bundle

from .errors import UsageError
from .fsutil import PUBLIC_FILE, write_file
from .slots import FW_DIR, IMAGE_FILE, LIB_DIR, install_slot, write_lib

# What a board receives, in this order; data/ (the device's own) and staging leftovers never.
BOARD_ENTRIES = ("boot.mpy", "first_stage.mpy", "identity.json", "certs", "keys", "fw", "lib", "assets")
REQUIRED = ("boot.mpy", "first_stage.mpy", "identity.json", "certs", "keys", f"{FW_DIR}/{IMAGE_FILE}")
IDENTITY = "identity.json"

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


def board_argv(image_dir: Path, port: str, *, romfs: bool = False) -> list[str]:
    """The mpremote command that copies `image_dir` to the board at `port`; UsageError for a
    port that is not one, or a directory that is not a provisioned firmware image."""
    if not port or port.startswith(("-", "+", ":")) or any(c.isspace() for c in port):
        raise UsageError(f"--port {port!r} is not a serial port (e.g. /dev/ttyUSB0, COM3)")
    image = Path(image_dir).resolve()  # absolute: mpremote reads a leading ':' as the board
    missing = [name for name in REQUIRED if not (image / name).exists()]
    if missing:
        raise UsageError(f"{image_dir} is not a provisioned firmware image (no "
                         f"{', '.join(missing)}): run `fleetloop fw provision` first")
    parts = [str(image / name) for name in BOARD_ENTRIES if (image / name).exists()]
    argv = [sys.executable, "-m", "mpremote", "connect", port, "fs", "cp", "-r", *parts, ":"]
    if romfs:
        argv += ["+", "romfs", "deploy", str(image / FW_DIR / IMAGE_FILE)]
    return argv


def flash_board(image_dir: Path, port: str, *, romfs: bool = False,
                run: Runner | None = None) -> int:
    """Run mpremote (its own progress on the terminal); its exit code."""
    argv = board_argv(image_dir, port, romfs=romfs)
    runner: Runner = run if run is not None else _run
    return runner(argv).returncode


def _replace_lib(image: Path, opened: bundle.Bundle) -> None:
    """lib/ swapped for the bundle's files by two renames (written beside it first), so a
    failure while writing leaves the old lib/ whole."""
    staging = image / f".flash-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_lib(staging, opened)
        old = staging / "old"
        if (image / LIB_DIR).exists():
            os.rename(image / LIB_DIR, old)
        os.rename(staging / LIB_DIR, image / LIB_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), check=False)


def flash_host(bundle_data: bytes, image_dir: Path, release_pub: bytes) -> bundle.Bundle:
    """Install full bundle `bundle_data` into slot a of the host image `image_dir` (its
    product must be the image's), with lib/ and identity.json's fw to match; the bundle."""
    image = Path(image_dir)
    try:
        ident = json.loads((image / IDENTITY).read_text())
        product = ident["profile"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{image_dir} is not a device image (no readable {IDENTITY}): "
                         "provision it first") from exc
    opened = install_slot(image, bundle_data, release_pub, product=str(product))
    _replace_lib(image, opened)
    ident["fw"] = opened.version
    write_file(image / IDENTITY, (json.dumps(ident, indent=2) + "\n").encode(), PUBLIC_FILE)
    return opened
