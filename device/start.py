"""What a start does once (main.py imports this at boot and unloads it again, so its code does
not sit next to the agent): read the arguments and the identity, say why this start happened,
and the tests' fault hook.

data/reset.json = {"cause": ..., "count": ...} says why: written by the host's device runner
(fleetloop/device_runner.py), which plays the board (power, watchdog, resets). Causes are
protocol.state.RESET_CAUSES; "none" when nothing was recorded (a plain first start).
"""

import json

from device import port


def parse_args(args):
    """(image, records or None, base settings or None, slot or None); ValueError on anything
    else. --interval-ms and --heartbeat-s set the base settings a signed config overrides;
    --slot is the firmware slot the first stage (boot.py) booted."""
    opts = {"--records": None, "--interval-ms": None, "--heartbeat-s": None}  # type: dict[str, int | None]
    rest = []
    slot = None
    while args:
        if args[0] == "--slot" and len(args) > 1 and args[1] in ("a", "b"):
            slot = args[1]
            args = args[2:]
        elif args[0] in opts and len(args) > 1:
            opts[args[0]] = int(args[1])  # ValueError for a non-integer
            args = args[2:]
        else:
            rest.append(args[0])
            args = args[1:]
    if len(rest) != 1 or rest[0].startswith("-"):
        raise ValueError("usage: device.main IMAGE [--records N] [--interval-ms MS] "
                         "[--heartbeat-s S]")
    base = {}  # type: dict[str, int]
    if opts["--interval-ms"]:
        base["interval_ms"] = opts["--interval-ms"]
    if opts["--heartbeat-s"]:
        base["heartbeat_s"] = opts["--heartbeat-s"]
    return rest[0].rstrip("/"), opts["--records"], base or None, slot


def begin(args, emit):
    """(image, records, base settings, identity, reset cause, resets so far, slot), after the
    "start" event; ValueError or OSError for bad arguments or an unreadable image (one without
    its record key included: the device would tag nothing the cloud accepts)."""
    image, records, base, slot = parse_args(args)
    ident = json.loads(port.read_bytes(image + "/identity.json"))
    try:
        size = len(port.read_bytes(image + "/keys/record.key"))
    except OSError:
        size = 0
    if size != 32:
        raise ValueError("no 32-byte record key in " + image + "/keys/record.key: provision the "
                         "image again (fleetloop fw keygen, then fleetloop fw provision)")
    data = image + "/data"
    port.makedirs(data)
    try:
        saved = json.loads(port.read_bytes(data + "/reset.json"))
        cause, resets = str(saved["cause"]), int(saved["count"])
    except (OSError, ValueError, KeyError, TypeError):
        cause, resets = "none", 0
    emit({"event": "start", "reset_cause": cause, "resets": resets, "heap_free": port.mem_free(),
          "slot": slot or ""})
    fault(data)
    return image, records, base, ident, cause, resets, slot


def fault(data_dir):
    """Test hook, used by tests only: data/fault names a fault ("memory", "crash", "hang") that
    happens once, here, at the start of a run; the file is removed first."""
    path = data_dir + "/fault"
    if not port.exists(path):
        return
    kind = port.read_bytes(path)
    port.remove(path)
    while kind == b"hang":  # alive but silent: the watchdog's case
        port.sleep_ms(1000)
    if kind == b"memory":
        raise MemoryError("injected by a test")
    raise RuntimeError("injected by a test")
