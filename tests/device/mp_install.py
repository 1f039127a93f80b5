"""One power-on of a device in the middle of an update, for the update tests
(test_device_install.py): runs under the real MicroPython unix port (and CPython) with the
repository on its path, with no network.

    micropython mp_install.py IMAGE GATEWAY_DIR PRODUCT CUT [commit]

What a start does, with the device's own code: the first stage picks the slot (device/boot.py),
main.py's install step runs when data/ota/go is there (device/install.py), a trial commits (its
first state acked, device/update.py; each of the commit's writes is a step), else the agent's download resumes (device/update.py) fed
with chunks from GATEWAY_DIR/<index> (the bytes of file <index> of the offer: a stand-in for
the gateway, which answers a fetch from the offset the device asks), and the agent's stop for
"update" writes data/ota/go as main.py does. Without `commit` a trial boot stops before the
commit (a new version that never gets its heartbeat acked).

Every write to flash counts as a step; at step CUT (0: none) the process says so and waits:
the test kills it (a power cut) there, exactly after that write.
"""

import json
import sys

from device import first_stage, install, port, update
from protocol import ota


def say(obj):
    print(json.dumps(obj))
    sys.stdout.flush()


STEPS = [0, int(sys.argv[4])]  # steps so far, the step to be cut at


def step(what):
    STEPS[0] += 1
    if STEPS[0] == STEPS[1]:
        say({"event": "cut", "at": what})
        while True:  # the power goes now
            port.sleep_ms(1000)


def versions(image):
    try:
        return json.loads(port.read_bytes(image + "/fw/boot.json"))
    except (OSError, ValueError):
        return {}


def download(up, gateway):
    """Feed the updater what it asks for, one chunk at a time, until it stops or gives up."""
    while up.want is not None and not up.stop:
        index = up.want[0]
        with open(gateway + "/" + str(index), "rb") as f:
            f.seek(up.have)
            data = f.read(ota.CHUNK_BYTES)
        if not data:
            return
        up.on_chunk(memoryview(ota.encode_chunk(ota.CHUNK_DATA, up.offer["id"], index, up.have,
                                                data)))
        step("chunk")


def start(image, gateway, product, commit):
    slot = first_stage.choose(image, lambda s: port.exists(image + "/fw/" + s + ".img"))
    step("boot")
    go = image + "/data/ota/go"
    while True:
        if port.exists(go):
            event, switched = install.run(image, slot, versions(image), product, say, step)
            if switched:
                return {"end": "reset", "slot": slot}
            if event["status"] == "failure":
                return {"end": "failed", "slot": slot, "reason": event["reason"]}
            continue
        up = update.Updater(image, slot, say)
        if up.trial:
            if not commit:
                return {"end": "trial", "slot": slot}
            up.on_state_sent()
            write = port.write_atomic

            def traced(path, data, write=write):  # the commit's writes are steps too
                write(path, data)
                step("commit " + path.rsplit("/", 1)[1])

            port.write_atomic = traced
            up.on_ack()
            port.write_atomic = write
            return {"end": "committed", "slot": slot}
        if up.offer is None:
            st = up.status or {}
            return {"end": "committed" if st.get("update") == "committed" else "idle",
                    "slot": slot}
        download(up, gateway)
        if not up.stop:
            return {"end": "failed", "slot": slot}
        port.write_atomic(go, b"")
        step("go")


result = start(sys.argv[1], sys.argv[2], sys.argv[3], len(sys.argv) > 5)
result["event"] = "done"
result["steps"] = STEPS[0]
say(result)
