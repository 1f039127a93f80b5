"""What a start needs once and then never again (main.py imports it at boot and unloads it).

data/reset.json = {"cause": ..., "count": ...} says why this start happened: written by the host's
device runner (fleetloop/device_runner.py), which plays the board (power, watchdog, resets).
Causes are protocol.state.RESET_CAUSES; "none" when nothing was recorded (a plain first start).
"""

import json

from device import port


def cause(data_dir):
    """(cause, resets so far) of this start."""
    try:
        saved = json.loads(port.read_bytes(data_dir + "/reset.json"))
        return str(saved["cause"]), int(saved["count"])
    except (OSError, ValueError, KeyError, TypeError):
        return "none", 0


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
