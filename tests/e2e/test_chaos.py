"""`make chaos`: many faults in a row on one running fleet, then a count that nothing was lost.

Not part of `make test` (marker `chaos`, deselected by default; `make chaos` runs it): about
five minutes. `make test` keeps one short run of each fault (test_faults.py). CHAOS_FAULTS sets
how many faults (default 100), CHAOS_SEED the random choices, so a failing run can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from fleetloop.stack import Stack, seqs_of, wait_records
from gateway.procs import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

FAULTS = int(os.environ.get("CHAOS_FAULTS", "100"))
SEED = int(os.environ.get("CHAOS_SEED", "1"))


def test_a_hundred_faults_lose_nothing(stack: Stack) -> None:
    """Each round one fault at a random moment: a power cut of the device (kill -9 of its
    runner, and with it MicroPython), kill -9 of the gateway, or kill -9 of its Mosquitto.
    Two bikes sample throughout; at the end each has every seq in the cloud exactly once."""
    rng = random.Random(SEED)
    devices = ["bike-1", "bike-2"]
    stack.start_path(devices)
    per_device = FAULTS * 12  # ~1.2 s of sampling per fault at 100 ms: faults land mid-stream
    for device_id in devices:
        stack.start_device(device_id, "bike", records=per_device, interval_ms=100)
    wait_records(stack, "bike-1", 5)
    counts = {"device": 0, "gateway": 0, "broker": 0}
    for _ in range(FAULTS):
        time.sleep(rng.uniform(0.2, 1.5))
        fault = rng.choice(("device", "device", "gateway", "broker"))
        counts[fault] += 1
        if fault == "device":
            victim = rng.choice(devices)
            stack.devices[victim].kill9()
            stack.start_device(victim, "bike", records=per_device, interval_ms=100)
        elif fault == "gateway":
            assert stack.gateway is not None
            broker = (stack.gateway_status() or {}).get("broker", {}).get("pid")
            stack.gateway.kill9()
            if broker:  # the broker it supervised notices and goes
                stack.wait_until(lambda pid=broker: not pid_alive(pid), timeout=10,
                                 what="the old broker to go")
            stack.start_gateway()
        else:
            status = stack.gateway_status() or {}
            pid = status.get("broker", {}).get("pid")
            if pid:
                os.kill(pid, signal.SIGKILL)
                stack.wait_until(
                    lambda: (stack.gateway_status() or {}).get("broker", {}).get("up"),
                    timeout=30, what="the gateway to restart its broker")
    for device_id in devices:
        records = wait_records(stack, device_id, per_device, timeout=300)
        assert seqs_of(records) == list(range(1, per_device + 1)), (device_id, counts)
