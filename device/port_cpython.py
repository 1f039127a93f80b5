# cpython-only: the CPython half of port.py; not copied into device images.
"""CPython versions of port.py's interpreter-specific names (see port.py for the contract)."""

import os
import select
import socket
import ssl
import time
import traceback

__all__ = [
    "const", "ticks_ms", "ticks_diff", "ticks_add", "sleep_ms", "mem_free", "collect", "listdir",
    "replace", "time_ms", "flush_durable", "file_size", "tls_context",
    "tls_connect", "wait", "close", "print_exception",
]

listdir = os.listdir
replace = os.replace
_contexts: dict[str, ssl.SSLContext] = {}


def const(value):
    """MicroPython's compile-time constant marker; a plain value here."""
    return value


def ticks_ms():
    return time.monotonic_ns() // 1000000


def ticks_diff(a, b):
    return a - b


def ticks_add(a, delta):
    return a + delta


def sleep_ms(ms):
    time.sleep(ms / 1000)


def print_exception(exc):
    traceback.print_exception(exc)


def mem_free():
    return 0  # no fixed heap to report


def collect():
    # Refcounting frees almost everything; a full collection per loop would only cost time
    # when one CPython process hosts many simulated devices.
    pass


def time_ms():
    return time.time_ns() // 1000000


def flush_durable(f):
    f.flush()
    os.fsync(f.fileno())


def file_size(path):
    return os.stat(path).st_size


def tls_context(certs_dir):
    if certs_dir is None:
        return None  # nothing to free here
    ctx = _contexts.get(certs_dir)
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(certs_dir + "/ca.pem")
        ctx.load_cert_chain(certs_dir + "/cert.pem", certs_dir + "/key.pem")
        _contexts[certs_dir] = ctx
    return ctx


class Stream:
    """An ssl socket with MicroPython's non-blocking stream convention."""

    def __init__(self, sock):
        self.sock = sock
        self.poll = select.poll()

    def readinto(self, buf):
        try:
            return self.sock.recv_into(buf)  # 0 = EOF
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None

    def write(self, buf):
        try:
            return self.sock.send(buf)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None

    def close(self):
        self.sock.close()


def tls_connect(host, port, certs_dir, timeout_ms=10000):
    ctx = tls_context(certs_dir)
    raw = socket.create_connection((host, port), timeout_ms / 1000)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=host)
        sock.setblocking(False)
    except BaseException:
        raw.close()
        raise
    return Stream(sock)


def wait(stream, timeout_ms, writable=False):
    stream.poll.register(stream.sock, select.POLLOUT if writable else select.POLLIN)
    return bool(stream.poll.poll(timeout_ms))


def close(stream):
    try:
        stream.close()
    except OSError:
        pass

