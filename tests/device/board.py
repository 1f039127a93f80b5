"""Run a provisioned image on MicroPython under fleetloop's device runner, as `fleetloop device
run` does, with a watchdog the tests choose.

    python board.py IMAGE HEAP WATCHDOG_S
"""

import sys
from pathlib import Path

from fleetloop.device_runner import device_command, run_device

if __name__ == "__main__":
    image, heap, watchdog_s = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    argv, env, cwd = device_command(image, "micropython", heap=heap)
    sys.exit(run_device(argv, env, cwd, watchdog_s=watchdog_s))
