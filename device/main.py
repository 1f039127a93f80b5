"""Boot: read the image, verify a staged config, run the agent (app.py); nothing else.

    MICROPYPATH=IMAGE/lib micropython -X heapsize=64K -m device.main IMAGE [--records N]
    python -m device.main IMAGE [--records N] [--interval-ms MS]

IMAGE holds identity.json, certs/, keys/config.pub and data/ (the device's durable state).
Events go to stdout, one JSON object per line, flushed at once.

The agent's code is imported per run and dropped again when a signed config must be verified
(or after a MemoryError): on a 64 KB MicroPython heap, Ed25519 verification needs ~37 KB that
only a heap without the agent has. A board would reset; here the loop below plays that role.
"""

import json
import sys

from device import port, settings

RESET_EXIT_CODE = 75  # fleetloop's device runner restarts the agent on this code


def emit(event):
    print(json.dumps(event))
    sys.stdout.flush()


def parse_args(args):
    """(image, records or None, interval_ms or None); ValueError on anything else."""
    opts = {"--records": None, "--interval-ms": None}  # type: dict[str, int | None]
    rest = []
    while args:
        if args[0] in opts and len(args) > 1:
            opts[args[0]] = int(args[1])  # ValueError for a non-integer
            args = args[2:]
        else:
            rest.append(args[0])
            args = args[1:]
    if len(rest) != 1 or rest[0].startswith("-"):
        raise ValueError("usage: device.main IMAGE [--records N] [--interval-ms MS]")
    return rest[0].rstrip("/"), opts["--records"], opts["--interval-ms"]


def main(args):
    try:
        image, records, interval = parse_args(args)
        ident = json.loads(port.read_bytes(image + "/identity.json"))
    except (ValueError, OSError) as e:
        print("error: " + str(e), file=sys.stderr)
        return 2
    port.makedirs(image + "/data")
    conf = settings.Settings(image + "/data", ident["id"],
                             {"interval_ms": interval} if interval else None)
    conf.load()
    fresh = True
    while True:
        if port.exists(conf.pending_path) and not conf.deferred:
            port.tls_context(None)  # verification needs every KB: the context is rebuilt below
            port.collect()
            from device import config

            event = config.process_pending(conf, port.read_bytes(image + "/keys/config.pub"))
            emit(event)
            del config
            port.unload("device.config")
            if event["status"] == "deferred" and not fresh:
                # Too fragmented to verify: ask for a reset, as a board would. A fresh heap
                # verifies before the agent loads; the runner (the board's power) restarts us.
                # On a fresh heap a deferral stays one (no reset loop).
                emit({"event": "reset", "why": "config needs a fresh heap"})
                return RESET_EXIT_CODE
        port.collect()
        port.tls_context(image + "/certs")  # before the agent's code: see port.tls_context
        from device import app

        why, _ = app.run(image, ident, conf, records, emit)
        fresh = False
        del app
        if why not in ("config", "memory"):
            return 0
        if why == "memory":
            port.sleep_ms(1000)  # a persistent shortage must not become a busy restart loop
        # Drop the agent's code so verification (or a fresh start) has the heap: MicroPython
        # keeps bytecode in RAM. It is imported again afterwards.
        for name in list(sys.modules):
            if name.startswith("device.") and name not in ("device.port", "device.settings",
                                                            "device.main"):
                port.unload(name)
        port.collect()


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
