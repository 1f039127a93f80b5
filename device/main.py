"""Boot: read the image, verify a staged config, build the agent (app.py) and run it; nothing else.

    MICROPYPATH=IMAGE/lib micropython -X heapsize=64K -m device.main IMAGE [--records N]
    python -m device.main IMAGE [--records N] [--interval-ms MS] [--heartbeat-s S]

IMAGE holds identity.json, certs/, keys/config.pub and data/ (the device's durable state).
Events go to stdout, one JSON object per line, flushed at once.

The agent's code is imported per run and dropped again when a signed config must be verified:
on a 64 KB MicroPython heap, Ed25519 verification needs ~37 KB that only a heap without the
agent has. A board would reset; here the loop below plays that role.

Every other way a run can end is a reset, as on a board: main() turns a MemoryError or any
other exception, wherever it happens (agent construction and imports included), into
port.reset() with the exit code of its cause (_EXIT_*). The unix port has no machine.reset():
the process exits with that code and the host's device runner (fleetloop/device_runner.py,
which mirrors these codes) restarts it after a back-off, is its watchdog, and writes the cause
to data/reset.json, which the next start reports ("start" event, state message).
"""

import sys

try:
    import json

    from device import port, settings
    from device.port import const
except MemoryError:  # a heap too small even for these: a memory reset all the same
    sys.exit(76)  # _EXIT_MEMORY (below; port.reset is not there to call)

# Exit codes of a run that ends in a reset, one per cause (the runner maps them back). const():
# no heap on MicroPython (CPython, and the test that pins the runner's copies, see globals).
_EXIT_REQUESTED = const(75)  # its own planned reset: a staged config needs a fresh heap
_EXIT_MEMORY = const(76)  # a MemoryError anywhere
_EXIT_CRASH = const(77)  # any other exception
_WATCHDOG_MS = const(30000)  # a board's hardware watchdog; the host runner's default is the same


def emit(event):
    print(json.dumps(event))
    sys.stdout.flush()


def run_agent(agent, emit):
    """Run the agent until it stops (device.agent.Agent.run); returns why. A MemoryError or
    any other exception propagates (main() turns it into a reset) after a best-effort close."""
    try:
        why = agent.run()
    finally:
        # Everything that matters is on flash already; after a failure (even a MemoryError: a
        # fragmented heap can refuse a small block) main() resets for a fresh heap.
        try:
            agent.close()
        except Exception:  # noqa: BLE001 - closing is a courtesy to the broker
            pass
    emit({"event": "stopped", "why": why, "heap_rest": agent.heap_rest,
          "heap_min": agent.heap_min})
    return why


def update_step(image, slot, product):
    """Run device/install.py's step on this heap and unload it; True when the slots were
    switched and the device must reset into the trial boot."""
    from device import install

    try:
        versions = json.loads(port.read_bytes(image + "/fw/boot.json"))
    except (OSError, ValueError):
        versions = {}
    event, switched = install.run(image, slot, versions, product, emit)
    emit(event)
    del install
    port.unload("device.install", "protocol.ota", "protocol.romfs", "protocol.ed25519",
                "protocol.sha512", "protocol")
    port.collect()
    return switched


def main(args):
    """Run the device; returns the exit code (where port.reset() returns at all)."""
    try:
        from device import start  # what a start does once: its code is unloaded again

        try:
            image, records, base, ident, cause, resets, slot = start.begin(args, emit)
        except (ValueError, OSError) as e:
            print("error: " + str(e), file=sys.stderr)
            return 2
        del start
        port.unload("device.start")
        feed = port.watchdog(_WATCHDOG_MS)
        conf = settings.Settings(image + "/data", ident["id"], base)
        conf.load()
        fresh = True
        go = image + "/data/ota/go"
        while True:
            if port.exists(go):
                # An update's heavy step (verify, plan, or install and switch) on this fresh
                # heap, again after a power cut in the middle of it.
                port.tls_context(None)
                port.collect()
                if update_step(image, slot, ident["profile"]):
                    emit({"event": "reset", "cause": "requested", "why": "trial boot of an update"})
                    return port.reset(_EXIT_REQUESTED)
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
                    emit({"event": "reset", "cause": "requested", "why": "config needs a fresh heap"})
                    return port.reset(_EXIT_REQUESTED)
            port.collect()
            port.tls_context(image + "/certs")  # before the agent's code: see port.tls_context
            # Consent before the first sample and before the agent's code: its record logged,
            # a waiting request applied, the allowed metrics known; its code unloaded again.
            from device import consent

            agreed = consent.start(image, ident, conf.version, emit)
            del consent
            port.unload("device.consent")
            port.collect()
            from device import app

            agent = app.build(image, ident, conf, records, emit, (cause, resets, feed), agreed,
                              slot=slot)
            # app.py's code is not needed while the agent runs: its heap goes back to the run.
            del app
            port.unload("device.app")
            why = run_agent(agent, emit)
            agent = None  # type: ignore[assignment]
            fresh = False
            if why == "update":
                # A reset for its heavy step, as a board would: a fresh heap at once (this one
                # is fragmented by the run), and the step runs first thing at the start.
                port.write_atomic(go, b"")
                emit({"event": "reset", "cause": "requested", "why": "an update's next step"})
                return port.reset(_EXIT_REQUESTED)
            if why not in ("config", "consent"):
                return 0
            # Drop the agent's code so verification has the heap: MicroPython keeps bytecode in
            # RAM. It is imported again afterwards.
            for name in list(sys.modules):
                if name.startswith("device.") and name not in ("device.port", "device.settings",
                                                                "device.main"):
                    port.unload(name)
            port.collect()
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - whatever it was, a board would reset
        memory = isinstance(e, MemoryError)
        port.collect()  # the failed run's objects are garbage now
        try:
            port.print_exception(e)
            emit({"event": "reset", "cause": "memory" if memory else "crash", "why": str(e)[:200]})
        except MemoryError:
            pass
        return port.reset(_EXIT_MEMORY if memory else _EXIT_CRASH)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
