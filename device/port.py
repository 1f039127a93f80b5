"""The only place that knows MicroPython from CPython (with its companion port_cpython.py).

Everything else in device/ calls these names and stays in the common subset. The MicroPython
versions live here; on CPython the same names come from port_cpython.py, which is marked
cpython-only so firmware images do not carry (and the device heap does not load) that code.
No policy here: this answers "how do I do X on this interpreter", never "when" or "why".

Streams returned by tls_connect() follow MicroPython's non-blocking socket convention:
readinto(buf) / write(buf) return None for "would block", readinto() returns 0 at EOF.
"""

import gc
import os
import sys

IMPL = sys.implementation.name
MICRO = IMPL == "micropython"

def random_below(n):
    """Uniform-ish int in [0, n) from the OS RNG (jitter, not crypto)."""
    b = os.urandom(4)
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) % n if n > 1 else 0


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    """mkdir -p (MicroPython's os has no makedirs)."""
    if path and not exists(path):
        if "/" in path:
            makedirs(path.rsplit("/", 1)[0])
        os.mkdir(path)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_atomic(path, data):
    """Write tmp + flush (+ fsync) + rename over path: readers see the old or the new file."""
    with open(path + ".tmp", "wb") as f:
        f.write(data)
        flush_durable(f)
    replace(path + ".tmp", path)


try:
    # A board's; the unix port's machine has neither (its stubs say so: hence the ignores).
    from machine import WDT  # type: ignore[attr-defined]
    from machine import reset as _reset  # type: ignore[attr-defined]
except ImportError:  # the unix port, CPython
    WDT = _reset = None  # type: ignore[misc,assignment]


def reset(code):
    """End this run as a board resets: machine.reset() where the port has it (a fresh heap;
    never returns). Elsewhere returns `code` for the process to exit with: on the host the
    device runner plays the board, restarts the agent and records the cause (see main.py)."""
    if _reset is not None:
        _reset()
    return code


def watchdog(timeout_ms):
    """Start the hardware watchdog and return its feed(); None where the port has none (the
    unix port, CPython): there the host runner watches the agent's event lines instead."""
    return WDT(timeout=timeout_ms).feed if WDT is not None else None


def unload(*names):
    """Forget modules so the GC can reclaim their code: MicroPython keeps bytecode in RAM, and
    code needed only now and then (config verification, state encoding) is loaded on use."""
    for name in names:
        if name in sys.modules:
            del sys.modules[name]
            pkg, _, attr = name.rpartition(".")
            if pkg in sys.modules and hasattr(sys.modules[pkg], attr):
                delattr(sys.modules[pkg], attr)


if MICRO:
    import select
    import socket
    import time

    import tls
    from micropython import const  # noqa: F401 - re-exported: `from device.port import const`

    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
    mem_free = gc.mem_free

    def print_exception(exc):
        # Its default is stdout, which carries events only. (The stubs type sys.stderr as
        # TextIO, not as the stream print_exception takes.)
        sys.print_exception(exc, sys.stderr)  # type: ignore[arg-type]

    collect = gc.collect  # no refcounting here: collect at known points
    listdir = os.listdir
    # rename(2) on the unix port and LittleFS: replaces the target atomically (no os.replace).
    replace = os.rename
    _poll = select.poll()
    _tls = None  # (certs_dir, context), built once per process

    def time_ms():
        """Wall clock, ms since the Unix epoch (record timestamps)."""
        return time.time_ns() // 1000000

    def flush_durable(f):
        f.flush()  # calls fsync on this port (there is no os.fsync)

    def file_size(path):
        return os.stat(path)[6]

    def tls_context(certs_dir):
        """Client context for certs_dir, built once (None forgets it). Build it early: the
        parsed certificates then sit low in a still unfragmented heap, and reconnects do not
        re-parse them."""
        global _tls
        if certs_dir is None:  # forget it (frees ~3 KB); the next call builds it again
            _tls = None
            return None
        if _tls is None or _tls[0] != certs_dir:
            ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            # mbedtls here takes DER only; PKCS8 and SEC1 EC keys both load.
            ctx.load_cert_chain(read_bytes(certs_dir + "/cert.der"),
                                read_bytes(certs_dir + "/key.der"))
            ctx.load_verify_locations(read_bytes(certs_dir + "/ca.der"))  # positional only
            ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]  # the stubs lack it
            _tls = (certs_dir, ctx)
        return _tls[1]

    def tls_connect(host, port, certs_dir, timeout_ms=10000):
        """Connect and handshake (blocking, with a socket timeout so a stalled peer raises
        OSError), then make the socket non-blocking. Tested on this port: mbedtls then
        returns None ("want read/write") from readinto/write instead of blocking mid-record,
        and poll() on the SSLSocket reports readiness. Callers must still read until None
        after each poll: TLS may hold decrypted bytes the socket no longer shows."""
        ctx = tls_context(certs_dir)
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        raw = socket.socket(ai[0], socket.SOCK_STREAM)
        try:
            raw.settimeout(timeout_ms / 1000)
            raw.connect(ai[-1])
            stream = ctx.wrap_socket(raw, server_hostname=host)
            raw.setblocking(False)
        except BaseException:
            raw.close()
            raise
        return stream

    def wait(stream, timeout_ms, writable=False):
        """Block up to timeout_ms until stream is readable (or writable)."""
        _poll.register(stream, select.POLLOUT if writable else select.POLLIN)
        return bool(_poll.poll(timeout_ms))

    def close(stream):
        try:
            _poll.unregister(stream)
        except (OSError, KeyError):
            pass
        try:
            stream.close()
        except OSError:
            pass
else:
    from device.port_cpython import *  # noqa: F403


def tls_opener(host, port_no, certs_dir):
    """device.link's opener: a fresh TLS stream to host:port_no per connection attempt."""
    return lambda: tls_connect(host, port_no, certs_dir)
