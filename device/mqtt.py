"""MQTT 3.1.1 codec and a minimal client over a non-blocking stream (see port.tls_connect).

The codec is pure: bytes in, bytes out, no sockets. The client owns two preallocated buffers
(rx, tx) and never blocks waiting for a particular reply: poll() handles whatever packet arrives,
whenever it arrives (CONNACK, PUBACK, PUBLISH QoS 0/1, SUBACK, PINGRESP). Bad wire data raises
MQTTError, never an assert: the session layer turns it into "link down".
Topics and payloads are bytes; on_publish receives memoryviews into the rx buffer that are only
valid during the call (copy what you keep).
"""

from device import port
from device.port import const

# const() names are inlined by MicroPython's compiler and cost no heap; 64 KB is tight.
_CONNECT = const(0x10)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_CONNACK = const(0x20)
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)
_MAX_REMAINING = const(268435455)  # largest 4-byte variable length integer
_SEND_TIMEOUT_MS = const(10000)

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

# Heap is the scarce resource (64 KB on the host port): buffers fit what actually arrives.
# Every downlink payload is at most protocol.bounds.MAX_DOWNLINK_BYTES (copied here: the device
# does not import protocol on its hot path; a test pins the copies), and rx holds it plus the
# fixed header, topic and packet id. A larger PUBLISH is not delivered: it is skipped (a QoS 1
# one still PUBACKed), counted in Client.skipped and reported through on_oversize.
MAX_DOWNLINK_BYTES = const(640)
RX_SIZE = MAX_DOWNLINK_BYTES + 128  # + protocol.bounds.DOWNLINK_OVERHEAD_BYTES
# Records are ~100-500 bytes: header + payload leave in one write (one TLS record); larger
# payloads go out in two writes instead of needing a bigger buffer.
TX_SIZE = 640
# A frame (protocol.frame) is built in tx itself, behind room for its header (frame_put): a
# backlog leaves in messages of as many records as fit (a bike's ~150-byte records four at a
# time) at no heap cost.


class MQTTError(Exception):
    """Malformed or unexpected wire data, or a refused connection."""


def encode_len(buf, pos, n):
    """Write n as an MQTT variable length integer into buf at pos; return the new pos."""
    if n < 0 or n > _MAX_REMAINING:
        raise ValueError("remaining length out of range")
    while n > 0x7F:
        buf[pos] = (n & 0x7F) | 0x80
        n >>= 7
        pos += 1
    buf[pos] = n
    return pos + 1


def decode_len(buf, pos, end):
    """Read a variable length integer from buf[pos:end]: (value, next_pos), or (-1, pos) if
    more bytes are needed. A fifth continuation byte is a protocol error (MQTTError)."""
    value = 0
    for i in range(4):
        if pos + i >= end:
            return -1, pos
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos + i + 1
    raise MQTTError("malformed remaining length")


def _put_str(buf, pos, data):
    n = len(data)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2:pos + 2 + n] = data
    return pos + 2 + n


def connect_packet(client_id, keepalive_s, will_topic=None, will_message=b""):
    """CONNECT, clean session, will QoS 1 retained. Once per connection, so it may allocate.

    Clean session: on every connect the device resubscribes (the retained config comes back)
    and re-sends everything unacked from its own buffer, so broker-side state buys nothing."""
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive out of range")
    size = 12 + len(client_id)
    flags = 0x02
    if will_topic is not None:
        flags = 0x2E  # clean session, will, will QoS 1, will retain
        size += 4 + len(will_topic) + len(will_message)
    buf = bytearray(size + 5)
    buf[0] = _CONNECT
    pos = _put_str(buf, encode_len(buf, 1, size), b"MQTT")
    buf[pos] = 4  # protocol level: 3.1.1
    buf[pos + 1] = flags
    buf[pos + 2] = keepalive_s >> 8
    buf[pos + 3] = keepalive_s & 0xFF
    pos = _put_str(buf, pos + 4, client_id)
    if will_topic is not None:
        pos = _put_str(buf, _put_str(buf, pos, will_topic), will_message)
    return bytes(buf[:pos])


def publish_header(buf, topic, payload_len, qos=0, retain=False, pid=0):
    """Write a PUBLISH fixed header + topic (+ packet id) into buf; return its length."""
    if qos not in (0, 1) or (qos and not 0 < pid <= 0xFFFF):
        raise ValueError("qos must be 0, or 1 with a packet id 1..65535")
    buf[0] = _PUBLISH | (qos << 1) | (1 if retain else 0)
    pos = _put_str(buf, encode_len(buf, 1, 2 + len(topic) + payload_len + 2 * qos), topic)
    if qos:
        buf[pos] = pid >> 8
        buf[pos + 1] = pid & 0xFF
        pos += 2
    return pos


def puback_packet(pid):
    return bytes((_PUBACK, 2, pid >> 8, pid & 0xFF))


def subscribe_packet(pid, topics):
    """topics: list of (topic bytes, qos)."""
    size = 2
    for t, _ in topics:
        size += 3 + len(t)
    buf = bytearray(size + 5)
    buf[0] = _SUBSCRIBE
    pos = encode_len(buf, 1, size)
    buf[pos] = pid >> 8
    buf[pos + 1] = pid & 0xFF
    pos += 2
    for t, q in topics:
        pos = _put_str(buf, pos, t)
        buf[pos] = q
        pos += 1
    return bytes(buf[:pos])


def frame_put(client, topic, pos, payload):
    """Copy one wire record and its line feed into the frame being built in tx for `topic`,
    at `pos` (0: a new frame, behind room for its header: a QoS 1 PUBLISH of at most TX_SIZE
    bytes needs a 2-byte remaining length). Returns the position after it, or 0 (nothing
    copied) when it does not fit. No state is kept here: the caller holds the position."""
    if not pos:
        pos = 7 + len(topic)
    end = pos + len(payload) + 1
    if end > TX_SIZE:
        return 0
    client.txmv[pos:end - 1] = payload
    client.tx[end - 1] = 10  # protocol.frame.SEP
    return end

def frame_send(client, topic, pos):
    """Send the frame built in tx up to `pos` as one QoS 1 PUBLISH (one write); returns its
    packet id. Its header goes right before the records (one byte later for a short one)."""
    pid = client.pid = client.pid % 0xFFFF + 1
    first = 7 + len(topic)
    size = pos - first
    start = 0 if 4 + len(topic) + size >= 128 else 1
    publish_header(client.txmv[start:], topic, size, 1, False, pid)
    client.send(client.txmv[start:pos])
    return pid


def _noop(*args):
    pass


def _refused(n, topic):
    raise MQTTError("subscription %d (%s) refused" % (n, bytes(topic).decode()))


class Client:
    """One MQTT connection's codec state. It never reconnects: that is link.Link's job.

    Callbacks (set by the owner; defaults ignore):
      on_connack(return_code, session_present)
      on_publish(topic_mv, payload_mv, qos, retain) - incoming; PUBACKed after it returns
      on_oversize(topic_mv, payload_size) - an incoming PUBLISH whose payload is larger than
        MAX_DOWNLINK_BYTES: not delivered, still PUBACKed
      on_refused(n, topic) - the broker refused subscription number n (1, 2, ... in the order
        subscribe() sent them); by default an MQTTError "subscription N (TOPIC) refused"
    PUBACK is only checked (the application's own ack decides what is delivered).
    I/O errors surface as OSError, bad frames as MQTTError; the caller marks the link down.
    """

    def __init__(self, client_id):
        self.client_id = client_id
        self.rx = bytearray(RX_SIZE)
        self.rxmv = memoryview(self.rx)
        self.tx = bytearray(TX_SIZE)
        self.txmv = memoryview(self.tx)
        self.conn = None
        self.rx_len = 0
        self.skip = 0  # bytes of an oversized packet still to discard
        self.skipped = 0
        self.pid = 0
        self.last_rx = self.last_tx = port.ticks_ms()  # tick values, set again by attach()
        self.on_connack = _noop
        self.on_publish = _noop
        self.on_oversize = _noop
        self.on_refused = _refused
        self.subscribed = ()  # the topics of the last subscribe(), for on_refused
        # Stream helpers; tests swap in their fake stream's own.
        self.wait = port.wait
        self.close = port.close

    def attach(self, conn):
        self.conn = conn
        self.rx_len = self.skip = 0
        self.last_rx = self.last_tx = port.ticks_ms()

    def detach(self):
        conn = self.conn
        self.conn = None
        if conn is not None:
            self.close(conn)

    def send(self, data):
        """Write all of data; waits for writability up to _SEND_TIMEOUT_MS, then OSError."""
        conn = self.conn
        if conn is None:
            raise OSError(107)  # ENOTCONN
        mv = memoryview(data)
        pos = 0
        start = port.ticks_ms()
        while pos < len(mv):
            # After "would block" TLS wants the same bytes again: pos only moves on success.
            n = conn.write(mv[pos:])
            if n:
                pos += n
            elif port.ticks_diff(port.ticks_ms(), start) > _SEND_TIMEOUT_MS:
                raise OSError(110)  # ETIMEDOUT
            else:
                self.wait(conn, 100, True)
        self.last_tx = port.ticks_ms()

    def publish(self, topic, payload, qos=0, retain=False):
        """Send one PUBLISH; returns its packet id (0 for QoS 0). Copies the payload into the
        preallocated tx buffer so header and body leave as one write (one TLS record).
        `payload` is bytes, or a tuple of byte strings (memoryviews too) sent as their
        concatenation without making it (a tagged state: protocol.tag)."""
        pid = 0
        if qos:
            pid = self.pid = self.pid % 0xFFFF + 1
        parts = payload if type(payload) is tuple else None
        size = len(payload) if parts is None else 0
        if parts is not None:
            for part in parts:
                size += len(part)
        n = publish_header(self.tx, topic, size, qos, retain, pid)
        end = n + size
        if end <= TX_SIZE:
            if parts is None:
                self.txmv[n:end] = payload
            else:
                for part in parts:
                    self.txmv[n:n + len(part)] = part
                    n += len(part)
            self.send(self.txmv[:end])
        else:
            self.send(self.txmv[:n])
            for part in parts or (payload,):
                self.send(part)
        return pid

    def subscribe(self, topics):
        self.subscribed = topics
        self.pid = self.pid % 0xFFFF + 1
        self.send(subscribe_packet(self.pid, topics))

    def poll(self, timeout_ms=0):
        """Wait up to timeout_ms for data, then read everything available (TLS may hold more
        than the socket shows) and dispatch every complete packet."""
        conn = self.conn
        if conn is None:
            raise OSError(107)
        if timeout_ms > 0:
            self.wait(conn, timeout_ms)
        while True:
            # _process always frees the buffer's head, so there is room to read into.
            n = conn.readinto(self.rxmv[self.rx_len:])
            if n is None:
                return
            if n == 0:
                raise OSError(104)  # ECONNRESET: the broker closed the connection
            self.rx_len += n
            self.last_rx = port.ticks_ms()
            self._process()

    def _process(self):
        buf = self.rx
        pos = 0
        end = self.rx_len
        while pos < end:
            if self.skip:
                n = min(self.skip, end - pos)
                pos += n
                self.skip -= n
                continue
            n, body = decode_len(buf, pos + 1, end)
            if n < 0:
                break
            if body + n - pos > RX_SIZE:
                # Larger than rx: handled (and PUBACKed) once its topic and packet id are
                # here, then its bytes are discarded as they arrive.
                if buf[pos] & 0xF0 != _PUBLISH:
                    raise MQTTError("oversized control packet")
                if not self._publish(buf[pos], body, body + n, end):
                    break
                self.skip = body + n - pos
                continue
            if body + n > end:
                break
            self._dispatch(buf[pos], body, body + n)
            pos = body + n
        if pos:
            self.rxmv[0:end - pos] = self.rxmv[pos:end]
        self.rx_len = end - pos

    def _publish(self, first, body, last, avail):
        """Deliver the PUBLISH at rx[body:last] (or report it as too large) and PUBACK it. Its
        payload may lie beyond avail, in bytes still to come (skipped). False while its topic
        and packet id are not all in rx[:avail]."""
        buf = self.rx
        qos = (first >> 1) & 3
        if qos > 1 or last - body < 2:
            raise MQTTError("bad publish")
        if body + 2 > avail:
            return False
        t = body + 2 + ((buf[body] << 8) | buf[body + 1])
        p = t + 2 * qos
        if p > last or p - body > RX_SIZE - 5:  # (a topic that long is none of ours)
            raise MQTTError("bad publish")
        if p > avail:
            return False
        pid = (buf[t] << 8) | buf[t + 1] if qos else 0
        if qos and not pid:
            raise MQTTError("publish with packet id 0")
        if last - p > MAX_DOWNLINK_BYTES or last > avail:  # (too large for rx: a long topic)
            self.skipped += 1
            self.on_oversize(self.rxmv[body + 2:t], last - p)
        else:
            self.on_publish(self.rxmv[body + 2:t], self.rxmv[p:last], qos, first & 1)
        if qos:
            self.send(puback_packet(pid))
        return True

    def _dispatch(self, first, body, end):
        kind = first & 0xF0
        size = end - body
        buf = self.rx
        if kind == _PUBLISH:
            self._publish(first, body, end, end)
        elif kind == _CONNACK and first == _CONNACK and size == 2:
            self.on_connack(buf[body + 1], buf[body] & 1)
        elif first == _SUBACK and size >= 3:
            for i in range(body + 2, end):
                if buf[i] & 0x80:
                    n = i - body - 1
                    subs = self.subscribed
                    self.on_refused(n, subs[n - 1][0] if n <= len(subs) else b"?")
        elif first == _PUBACK and size == 2 or first == _PINGRESP and size == 0:
            pass  # checked; nothing to do (see the class docstring)
        else:
            raise MQTTError("unexpected packet 0x%02x" % first)
