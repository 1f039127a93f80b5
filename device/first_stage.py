"""First stage: pick the firmware slot, count trial boots, fall back and mount the slot's ROMFS
image. boot.py imports it, calls start() and drops it again before device.main runs (its code
sits in the heap: it is loaded from the filesystem, not from a slot). Provisioning places both
at the image's root (boot.mpy, first_stage.mpy), outside the slots: an update never replaces
them, and they are what still boots when a new version does not.

fw/boot.json (docs/protocol.md, "Device slots") says which slot runs:
    {"active":"a","a":"0.1.0"}                                  a plain start of slot a
    {"active":"a","trial":"b","tries":0,"a":"0.1.0","b":"0.2.0"}  an update waits for its trial
A trial slot boots at most MAX_TRIES times; the new version commits (writes "active":"b",
device/update.py) once its first heartbeat is acknowledged. A trial that has used its tries
without committing (it crashed, hung, or lost power every time) falls back here: the previous
slot boots again and boot.json says why ("rolled_back", "why"), which the agent reports.
Every change of boot.json is one atomic rename: a power cut leaves the old or the new file.

A ROMFS image keeps bytecode out of the heap: the interpreter runs it in place from the
(memory-mapped) image. On a board with ROMFS partitions (MicroPython >= 1.25) slot a is
partition 0 and slot b partition 1 (vfs.rom_ioctl). On the host, fleetloop's launcher maps
fw/a.img and fw/b.img read-only and passes "a:ADDRESS:SIZE,b:..." in FLEETLOOP_ROMFS. Without
either, the modules come from lib/ (.mpy files, whose bytecode is loaded into the heap) and the
device cannot take updates.
"""

import json
import os
import sys

ROM = "/rom"
FW = "fw"
MAX_TRIES = 3  # boots a new version gets to commit before the previous one comes back
SLOTS = ("a", "b")


def read_state(fw):
    try:
        with open(fw + "/boot.json") as f:
            state = json.loads(f.read())
        if isinstance(state, dict) and state.get("active") in SLOTS:
            return state
    except (OSError, ValueError):
        pass
    return {"active": "a"}


def write_state(fw, state):
    tmp = fw + "/boot.json.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(state))
        f.flush()
        if hasattr(os, "fsync"):
            os.fsync(f.fileno())
    os.rename(tmp, fw + "/boot.json")


def last_reset(image):
    try:
        with open(image + "/data/reset.json") as f:
            return str(json.loads(f.read())["cause"])
    except (OSError, ValueError, KeyError, TypeError):
        return "none"


def choose(image, present):
    """The slot to boot ("a" or "b") and boot.json updated for it; `present(slot)` says
    whether a slot's image is there to boot."""
    fw = image + "/" + FW
    state = read_state(fw)
    active = state["active"]
    trial = state.get("trial")
    if trial in SLOTS and trial != active:
        tries = state.get("tries", 0)
        if type(tries) is not int:
            tries = MAX_TRIES
        if tries < MAX_TRIES and present(trial):
            state["tries"] = tries + 1
            write_state(fw, state)
            return trial
        why = "%s did not commit in %d boots (last reset: %s)" % (
            state.get(trial, "the new version"), tries, last_reset(image))
        if not present(trial):
            why = "slot " + trial + " is missing"
        back = {"active": active, "rolled_back": trial, "why": why}
        for slot in SLOTS:
            if slot in state:
                back[slot] = state[slot]
        write_state(fw, back)
    return active


def _mapped():
    """{slot: (address, size)} of the images the host's launcher mapped."""
    where = os.getenv("FLEETLOOP_ROMFS") if hasattr(os, "getenv") else None
    found = {}
    for item in (where or "").split(","):
        parts = item.split(":")
        if len(parts) == 3 and parts[0] in SLOTS:
            found[parts[0]] = (int(parts[1]), int(parts[2]))
    return found


def partitions():
    """True on a board whose firmware has ROMFS partitions (the slots)."""
    try:
        import vfs

        return hasattr(vfs, "rom_ioctl") and vfs.rom_ioctl(1) >= 2  # type: ignore[attr-defined]
    except (ImportError, OSError):
        return False


def mount(slot, mapped):
    import vfs

    if ROM in sys.path:  # a board's firmware mounts partition 0 itself: the slot decides
        vfs.umount(ROM)  # type: ignore[attr-defined]
        sys.path.remove(ROM)
    if mapped:
        import uctypes

        addr, size = mapped[slot]
        rom = uctypes.bytearray_at(addr, size)
    else:  # a board: the slot's ROMFS partition
        rom = vfs.rom_ioctl(2, SLOTS.index(slot))  # type: ignore[attr-defined]
    # The unix stubs make VfsRom abstract and the ESP32 ones lack it.
    vfs.mount(vfs.VfsRom(rom), ROM)  # type: ignore[abstract,attr-defined]
    sys.path.insert(0, ROM)


def start(image):
    """Choose and mount the slot (None: no slots here, the modules come from lib/)."""
    mapped = _mapped()
    if not mapped and not partitions():
        return None
    slot = choose(image, (lambda s: s in mapped) if mapped else (lambda s: True))
    mount(slot, mapped)
    return slot
