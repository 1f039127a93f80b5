"""MQTT session: connect, subscribe, keepalive, liveness, capped jittered backoff, reconnect.

One state variable (DOWN -> CONNECTING -> UP) and one idempotent entry point for every failure,
mark_down(reason). With the gateway's back-pressure hint in effect (hint_ms, protocol.hint) a
reconnect waits max(the jittered backoff, hint + random below hint + 1): at least the hint,
spread over up to twice it. The application never sees sockets: it gets on_up() after each CONNACK
(subscriptions are already sent) and on_down(reason) once per lost connection.
"""

from device import mqtt, port
from device.port import const

DOWN = const(0)
CONNECTING = const(1)
UP = const(2)
BACKOFF_BASE_MS = const(500)
BACKOFF_CAP_MS = const(30000)
_CONNECT_TIMEOUT_MS = const(10000)


def backoff_ms(attempt, base_ms, cap_ms, rand=port.random_below):
    """Delay before reconnect attempt number `attempt` (1, 2, ...): exponential, capped, with
    "equal jitter" (half fixed, half random) so a fleet that lost its gateway at the same
    instant does not come back in lock-step, yet no device retries in a tight loop."""
    if attempt < 1:
        return 0
    exp = base_ms << min(attempt - 1, 20)
    if exp > cap_ms:
        exp = cap_ms
    half = exp // 2
    return half + rand(half + 1)


class Link:
    """Session over one mqtt.Client. `opener()` returns a fresh connected stream (port.tls_connect)."""

    def __init__(self, client, opener, keepalive_s, subscriptions, status_topic, optional=0):
        """`subscriptions`: [(topic, qos)]; the last `optional` of them may be refused (the
        back-pressure hint: the device works without it), the others may not."""
        self.client = client
        self.opener = opener
        self.keepalive_s = keepalive_s
        self.subscriptions = subscriptions
        self.required = len(subscriptions) - optional
        self.hint_ms = 0  # the gateway's back-pressure hint in effect (protocol.hint)
        self.status_topic = status_topic
        self.state = DOWN
        self.attempt = 0
        self.retry_at = port.ticks_ms()
        self.started = self.retry_at  # a tick value (ticks are opaque: not 0)
        self.connects = 0
        self.failures = 0  # connections lost or never made, since boot
        self.last_error = ""  # why the last one was (reported in the device's state)
        self.pinged = self.retry_at  # ticks of the last PINGREQ
        self.on_up = mqtt._noop
        self.on_down = mqtt._noop
        client.on_connack = self._on_connack
        client.on_refused = self._on_refused

    @property
    def up(self):
        return self.state == UP

    def mark_down(self, reason):
        """The only way a connection ends. Safe to call any number of times."""
        if self.state == DOWN:
            return
        self.state = DOWN
        self.client.detach()
        if reason != "closed":
            self.failures += 1
            self.last_error = reason
        self.attempt += 1
        delay = backoff_ms(self.attempt, BACKOFF_BASE_MS, BACKOFF_CAP_MS)
        hint = self.hint_ms
        if hint:  # at least the hint, spread over up to twice it (protocol.hint)
            delay = max(delay, hint + port.random_below(hint + 1))
        self.retry_at = port.ticks_add(port.ticks_ms(), delay)
        self.on_down(reason)

    def close(self):
        """Graceful stop: say offline ourselves (a DISCONNECT suppresses the will)."""
        if self.state == UP:
            try:
                if self.status_topic:
                    self.client.publish(self.status_topic, b"offline", 1, True)
                self.client.send(mqtt.DISCONNECT_PACKET)
            except (OSError, mqtt.MQTTError):
                pass
        self.mark_down("closed")

    def service(self, timeout_ms):
        """Advance the session by at most timeout_ms. Never raises for network trouble."""
        if self.state == DOWN:
            wait = port.ticks_diff(self.retry_at, port.ticks_ms())
            if wait > 0:
                port.sleep_ms(min(wait, timeout_ms))
                return
            self._open()
            return
        try:
            self.client.poll(timeout_ms)
            self._check_liveness()
        except OSError as e:
            self.mark_down("io error " + str(e.args[0] if e.args else e))
        except mqtt.MQTTError as e:
            self.mark_down("protocol error: " + str(e))

    def _open(self):
        self.state = CONNECTING
        self.started = port.ticks_ms()
        try:
            conn = self.opener()
        except (OSError, ValueError) as e:
            # MicroPython's mbedtls reports a refused certificate as ValueError, not OSError.
            self.mark_down("connect failed " + str(e.args[0] if e.args else e).strip())
            return
        self.client.attach(conn)
        try:
            self.client.send(mqtt.connect_packet(
                self.client.client_id, self.keepalive_s, self.status_topic, b"offline"))
        except OSError as e:
            self.mark_down("connect failed " + str(e.args[0] if e.args else e))

    def _on_connack(self, code, session_present):
        if code != 0:
            # Raised inside poll(); service() turns it into mark_down.
            raise mqtt.MQTTError("connection refused, code " + str(code))
        if self.state != CONNECTING:
            raise mqtt.MQTTError("unexpected connack")
        self.state = UP
        self.attempt = 0
        self.connects += 1
        self.pinged = port.ticks_ms()
        if self.subscriptions:
            self.client.subscribe(self.subscriptions)
        if self.status_topic:
            self.client.publish(self.status_topic, b"online", 1, True)
        self.on_up()

    def _on_refused(self, n, topic):
        reason = "subscription %d (%s) refused" % (n, bytes(topic).decode())
        if n <= self.required:  # without it the device never hears acks or configs
            raise mqtt.MQTTError(reason)
        self.last_error = reason  # reported in the state; the link stays up without it

    def _check_liveness(self):
        now = port.ticks_ms()
        client = self.client
        if self.state == CONNECTING:
            if port.ticks_diff(now, self.started) > _CONNECT_TIMEOUT_MS:
                self.mark_down("no connack")
            return
        half = self.keepalive_s * 500
        # Liveness from the last byte received, not only from PINGRESP: any traffic counts.
        # Ping when nothing was sent for half the keepalive (MQTT wants a packet within it) and
        # when nothing was heard for half of it (at most once per half): a link that only sends
        # QoS 0 gets no replies otherwise, and a healthy broker's PINGRESP keeps it alive.
        quiet = port.ticks_diff(now, client.last_rx)
        if quiet > 3 * half:
            self.mark_down("keepalive timeout")
        elif port.ticks_diff(now, client.last_tx) >= half or \
                quiet >= half and port.ticks_diff(now, self.pinged) >= half:
            client.send(mqtt.PINGREQ_PACKET)
            self.pinged = now
