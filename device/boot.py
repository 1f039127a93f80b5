"""Boot: run the first stage (first_stage.py: pick the firmware slot, mount its ROMFS image), drop
it, then run device.main, as a board runs boot.py before main.py. Provisioning places this
module at the image's root (boot.mpy), next to first_stage.mpy, outside the slots.

    python -m fleetloop.romfs_launch fw -X heapsize=56K -m boot . [--records N]
"""

import sys


def run():
    args = sys.argv[1:]
    image = args[0].rstrip("/") if args and not args[0].startswith("-") else "."
    import first_stage

    slot = first_stage.start(image)
    # Its bytecode is in the heap (loaded from the filesystem): give it back to the agent.
    del sys.modules["first_stage"]
    first_stage = None  # noqa: F841
    import gc

    gc.collect()
    from device import main

    try:
        return main.main(args + (["--slot", slot] if slot else []))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(run())
