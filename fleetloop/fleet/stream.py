"""A non-blocking mTLS stream for simulated devices, with device.port's stream convention.

On a board (and in `fleetloop device run`) port.tls_connect connects and handshakes blocking,
with a timeout: one device, one socket. Thousands of devices in one process cannot block on
anyone's handshake, so the simulator's opener returns a stream at once and finishes the TCP
connect and the TLS handshake as the reactor reports the socket ready. Until then readinto()
returns None ("would block"), as MicroPython's does; writes are queued in the stream and leave
as the socket takes them, so device.mqtt's send() never waits. The session layer's own timers
(device.link: 10 s for a CONNACK) bound a handshake that never completes.
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
from collections.abc import Callable
from typing import Any

_MAX_QUEUED = 1 << 20  # a device that queues a MiB unsent has lost its broker: link down
_CHUNK = 16384  # one TLS record's worth per send()

CONNECTING, HANDSHAKING, OPEN, CLOSED = range(4)


class Reactor:
    """One selector for every simulated device's socket. A ready socket advances its stream
    (connect, handshake, queued writes) and then wakes the stream's owner."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()

    def watch(self, stream: SimStream, events: int) -> None:
        try:
            key = self.selector.get_key(stream.sock)
        except KeyError:
            self.selector.register(stream.sock, events, stream)
            return
        if key.events != events:
            self.selector.modify(stream.sock, events, stream)

    def forget(self, stream: SimStream) -> None:
        try:
            self.selector.unregister(stream.sock)
        except (KeyError, ValueError, OSError):
            pass

    def poll(self, timeout_s: float) -> list[SimStream]:
        """Advance every ready stream; return them (their owners want a step)."""
        ready = []
        for key, mask in self.selector.select(max(0.0, timeout_s)):
            stream: SimStream = key.data
            stream.ready(mask)
            ready.append(stream)
        return ready

    def __len__(self) -> int:
        return len(self.selector.get_map())

    def close(self) -> None:
        self.selector.close()


class SimStream:
    """One device's connection: TCP connect, TLS handshake and writes without blocking."""

    def __init__(self, reactor: Reactor, context: ssl.SSLContext, host: str, port: int,
                 owner: Any) -> None:
        self.reactor = reactor
        self.owner = owner  # woken by the scheduler when the socket is ready
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setblocking(False)
        try:
            code = raw.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                raise OSError(code, errno.errorcode.get(code, str(code)))
            self.sock = context.wrap_socket(raw, server_hostname=host,
                                            do_handshake_on_connect=False)
        except BaseException:
            raw.close()
            raise
        self.state = CONNECTING
        self.error: OSError | None = None
        self.out = bytearray()
        reactor.watch(self, selectors.EVENT_WRITE)

    # -- device.port's stream convention ------------------------------------------------------
    def readinto(self, buf: Any) -> int | None:
        if self.error is not None:
            raise self.error
        if self.state != OPEN:
            return None
        try:
            return self.sock.recv_into(buf)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None
        except ssl.SSLError as e:
            raise OSError(errno.ECONNRESET, f"tls: {e.reason or e}") from e

    def write(self, data: Any) -> int:
        if self.error is not None:
            raise self.error
        if len(self.out) + len(data) > _MAX_QUEUED:
            raise OSError(errno.ENOBUFS, "the broker takes nothing")
        self.out += data
        if self.state == OPEN:
            self._flush()
        return len(data)

    def close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.reactor.forget(self)
        try:
            self.sock.close()
        except OSError:
            pass

    # -- driven by the reactor ---------------------------------------------------------------
    def ready(self, mask: int) -> None:
        try:
            if self.state == CONNECTING:
                code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, errno.errorcode.get(code, str(code)))
                self.state = HANDSHAKING
            if self.state == HANDSHAKING:
                self._handshake()
            if self.state == OPEN:
                self._flush()
        except OSError as e:
            self._fail(e)

    def _handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.reactor.watch(self, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self.reactor.watch(self, selectors.EVENT_WRITE)
            return
        except ssl.SSLError as e:  # refused certificate, revoked device, protocol error
            raise OSError(errno.ECONNREFUSED, f"tls handshake: {e.reason or e}") from e
        self.state = OPEN

    def _flush(self) -> None:
        out = self.out
        try:
            while out:
                n = self.sock.send(out[:_CHUNK])
                if not n:
                    break
                del out[:n]
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        except ssl.SSLError as e:
            raise OSError(errno.ECONNRESET, f"tls: {e.reason or e}") from e
        self.reactor.watch(self, selectors.EVENT_READ | selectors.EVENT_WRITE if out
                           else selectors.EVENT_READ)

    def _fail(self, error: OSError) -> None:
        self.error = error
        self.reactor.forget(self)


def opener(reactor: Reactor, context: ssl.SSLContext, host: str, port: int,
           owner: Any) -> Callable[[], SimStream]:
    """What device.app.build takes as `opener`: a fresh stream per connection attempt."""
    return lambda: SimStream(reactor, context, host, port, owner)


def client_context(certs_dir: str) -> ssl.SSLContext:
    """The device's mTLS client context, from its image's PEM files (as device.port_cpython)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs_dir + "/ca.pem")
    ctx.load_cert_chain(certs_dir + "/cert.pem", certs_dir + "/key.pem")
    return ctx
