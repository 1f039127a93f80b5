"""Boot: put the firmware's ROMFS image first on sys.path, then run device.main, as a board runs
boot.py before main.py. Provisioning places this module at the image's root (boot.mpy), not in
the firmware: it runs before the firmware is reachable.

    python -m fleetloop.romfs_launch romfs.img -X heapsize=56K -m boot . [--records N]

A ROMFS image keeps bytecode out of the heap: the interpreter runs it in place from the
(memory-mapped) image, so only module objects, functions and globals live in RAM. On a board
with a ROMFS partition (MicroPython >= 1.25) the firmware mounts it at /rom and puts /rom on
sys.path itself. On the host, fleetloop's launcher maps the image read-only and passes
"ADDRESS:SIZE" in FLEETLOOP_ROMFS; this module mounts it. Without either, the modules come
from lib/ (.mpy files, whose bytecode is loaded into the heap).
"""

import os
import sys

ROM = "/rom"


def mount():
    """Mount the host's mapped ROMFS image at ROM; False when there is none."""
    where = os.getenv("FLEETLOOP_ROMFS") if hasattr(os, "getenv") else None
    if not where or ROM in sys.path:
        return False
    import uctypes
    import vfs

    addr, _, size = where.partition(":")
    # The unix stubs make VfsRom abstract and the ESP32 ones lack it (there the firmware mounts
    # /rom itself and this path is not taken).
    vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(addr), int(size))), ROM)  # type: ignore[abstract,attr-defined]
    sys.path.insert(0, ROM)
    return True


def run():
    mount()
    from device import main

    try:
        return main.main(sys.argv[1:])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(run())
