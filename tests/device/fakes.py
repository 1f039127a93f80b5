# Test doubles in the MicroPython/CPython common subset.


class FakeStream:
    """A non-blocking stream with port.tls_connect's convention: readinto/write return None
    for "would block", readinto returns 0 at EOF. `chunk` limits bytes per call (partial
    reads and writes); `stall` makes the next N writes would-block."""

    def __init__(self, chunk=4096):
        self.incoming = []
        self.sent = bytearray()
        self.chunk = chunk
        self.eof = False
        self.stall = 0
        self.closed = False
        self.waits = 0

    def feed(self, data):
        self.incoming.append(bytes(data))

    def readinto(self, buf):
        if not self.incoming:
            return 0 if self.eof else None
        data = self.incoming[0]
        n = min(len(data), len(buf), self.chunk)
        buf[:n] = data[:n]
        if n == len(data):
            self.incoming.pop(0)
        else:
            self.incoming[0] = data[n:]
        return n

    def write(self, buf):
        if self.stall:
            self.stall -= 1
            return None
        n = min(len(buf), self.chunk)
        self.sent.extend(bytes(buf[:n]))
        return n

    def take(self):
        out = bytes(self.sent)
        self.sent = bytearray()
        return out

    def wait(self, stream, timeout_ms, writable=False):
        self.waits += 1
        return True

    def close(self, stream=None):
        self.closed = True


def plug(client, stream):
    """Attach a FakeStream to an mqtt.Client."""
    client.wait = stream.wait
    client.close = stream.close
    client.attach(stream)
    return stream


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def equal(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type:
        return
    raise AssertionError(f"{fn} did not raise {exc_type}")
