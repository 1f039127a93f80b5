"""Pack a directory of compiled modules into a ROMFS image (MicroPython's read-only filesystem).

A board (MicroPython >= 1.25) runs bytecode in place from a ROMFS image, so the modules' code
does not take heap; `mpremote romfs deploy IMAGE` writes an image to a board's partition. On
the host, fleetloop's launcher maps the image into memory (see docs/factory.md).

There is one writer: protocol.romfs, which the device's installer also runs to check the slot
it assembles from an update. Its output is byte for byte mpremote's (VfsRomWriter, as
`mpremote romfs build` writes a directory: entries sorted by name); tests/fwtool pin the two
together on the real firmware and on generated trees.
"""

from __future__ import annotations

import os
from pathlib import Path

from protocol import romfs

from .errors import FwToolError


def tree_files(tree: Path) -> list[tuple[str, bytes]]:
    """(path relative to `tree` with '/', bytes) of every file under it, sorted by path.
    Names must be ASCII (a ROMFS name is raw bytes the board compares); empty directories hold
    nothing a slot needs and are left out."""
    out: list[tuple[str, bytes]] = []

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if not entry.name.isascii():
                raise FwToolError(f"ROMFS names must be ASCII: {entry.path}")
            if entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), prefix + entry.name + "/")
            elif entry.is_file(follow_symlinks=False):
                out.append((prefix + entry.name, Path(entry.path).read_bytes()))
            else:
                raise FwToolError(f"not a regular file or directory: {entry.path}")

    walk(Path(tree), "")
    return sorted(out)


def image_of(files: list[tuple[str, bytes]]) -> bytes:
    """The ROMFS image of (path, bytes) pairs (protocol.romfs.build)."""
    return romfs.build([(path, len(data)) for path, data in files], [data for _, data in files])


def build_image(tree: Path) -> bytes:
    """The ROMFS image of every file under `tree`."""
    return image_of(tree_files(tree))
