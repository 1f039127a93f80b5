# Session layer: one state, idempotent mark_down, backoff, keepalive and liveness.
from fakes import FakeStream, check, equal

from device import link, mqtt, port

SUBS = [(b"fleet/d/ack", 1), (b"fleet/d/config", 1)]


def test_backoff_is_capped_exponential_with_jitter(tmp):
    low = lambda n: 0  # noqa: E731
    high = lambda n: n - 1  # noqa: E731
    equal(link.backoff_ms(0, 500, 30000, low), 0, "no failure yet")
    equal([link.backoff_ms(a, 500, 30000, low) for a in (1, 2, 3, 4)], [250, 500, 1000, 2000],
          "half fixed")
    equal([link.backoff_ms(a, 500, 30000, high) for a in (1, 2, 3)], [500, 1000, 2000], "max")
    equal(link.backoff_ms(50, 500, 30000, low), 15000, "capped, huge attempt is fine")
    for _ in range(50):
        d = link.backoff_ms(3, 500, 30000)
        check(1000 <= d <= 2000, "jitter within bounds: " + str(d))


def _session(streams):
    c = mqtt.Client(b"d")
    c.wait = lambda stream, ms, writable=False: True
    c.close = lambda stream: stream.close()

    def opener():
        if not streams:
            raise OSError(111)
        return streams.pop(0)

    s = link.Link(c, opener, 10, SUBS, b"fleet/d/status")
    events = []
    s.on_up = lambda: events.append("up")
    s.on_down = lambda reason: events.append(reason)
    return c, s, events


def test_connect_subscribe_online_then_down_once(tmp):
    stream = FakeStream()
    c, s, events = _session([stream])
    equal(s.state, link.DOWN, "starts down")
    s.service(0)
    equal(s.state, link.CONNECTING, "connecting")
    check(stream.take().startswith(b"\x10"), "CONNECT sent")
    stream.feed(b"\x20\x02\x00\x00")
    s.service(0)
    equal((s.state, s.up, events), (link.UP, True, ["up"]), "up after CONNACK")
    sent = stream.take()
    check(sent.startswith(mqtt.subscribe_packet(1, SUBS)), "resubscribed on connect")
    check(sent.endswith(b"\x33\x18\x00\x0efleet/d/status\x00\x02online"), "online, retained")
    s.mark_down("test")
    s.mark_down("again")
    equal(events, ["up", "test"], "mark_down is idempotent")
    equal((s.state, s.attempt), (link.DOWN, 1), "down, one failed attempt")
    check(port.ticks_diff(s.retry_at, port.ticks_ms()) > 0, "waits before retrying")


def test_refused_connack_and_failed_open_back_off(tmp):
    stream = FakeStream()
    c, s, events = _session([stream])
    s.service(0)
    stream.feed(b"\x20\x02\x00\x05")  # not authorized
    s.service(0)
    equal(events, ["protocol error: connection refused, code 5"], "refused")
    s.retry_at = port.ticks_ms()
    s.service(0)  # opener has no stream left: connect fails
    equal((s.state, s.attempt), (link.DOWN, 2), "second failure")
    check(events[-1].startswith("connect failed"), events[-1])


def test_keepalive_ping_and_liveness(tmp):
    stream = FakeStream()
    c, s, events = _session([stream])
    s.service(0)
    stream.feed(b"\x20\x02\x00\x00")
    s.service(0)
    stream.take()
    c.last_tx = port.ticks_add(port.ticks_ms(), -6000)  # quiet for > keepalive/2
    s.service(0)
    equal(stream.take(), b"\xc0\x00", "PINGREQ")
    stream.feed(b"\xd0\x00")
    s.service(0)
    equal(s.state, link.UP, "still up")
    c.last_rx = port.ticks_add(port.ticks_ms(), -16000)  # nothing heard for 1.5 keepalives
    s.service(0)
    equal(events[-1], "keepalive timeout", "declared dead from silence")


def test_broken_stream_marks_down(tmp):
    stream = FakeStream()
    c, s, events = _session([stream])
    s.service(0)
    stream.feed(b"\x20\x02\x00\x00")
    s.service(0)
    stream.feed(b"\x40\x05\x00")  # malformed PUBACK header
    stream.feed(b"\x01\x00\x00\x00")
    s.service(0)
    check(events[-1].startswith("protocol error"), events[-1])
    check(stream.closed, "stream closed")


def _up():
    stream = FakeStream()
    c, s, events = _session([stream])
    s.service(0)
    stream.feed(b"\x20\x02\x00\x00")
    s.service(0)
    stream.take()
    return stream, c, s, events


def test_refused_subscription_is_a_failed_link_with_a_reason(tmp):
    stream, c, s, events = _up()
    stream.feed(b"\x90\x04\x00\x01\x01\x80")  # the second topic refused
    s.service(0)
    equal(s.state, link.DOWN, "down")
    equal(events[-1], "protocol error: subscription 2 (fleet/d/config) refused", "reason")
    equal((s.failures, s.last_error), (1, events[-1]), "remembered for the state message")


def test_a_refused_optional_subscription_keeps_the_link_up(tmp):
    stream = FakeStream()
    c = mqtt.Client(b"d")
    c.wait = stream.wait
    c.close = stream.close
    s = link.Link(c, lambda: stream, 10, SUBS + [(b"fleet/hint", 1)], None, 1)
    s.service(0)
    stream.feed(b"\x20\x02\x00\x00")
    s.service(0)
    stream.feed(b"\x90\x05\x00\x01\x01\x01\x80")  # the hint refused (an ACL without it)
    s.service(0)
    equal((s.state, s.failures), (link.UP, 0), "up: the device works without the hint")
    equal(s.last_error, "subscription 3 (fleet/hint) refused", "but the operator is told")
    stream.feed(b"\x90\x05\x00\x01\x01\x80\x01")  # config refused: fatal
    s.service(0)
    equal((s.state, s.last_error), (link.DOWN,
                                    "protocol error: subscription 2 (fleet/d/config) refused"),
          "down")


def test_the_hint_sets_the_least_reconnect_delay_spread_over_twice_it(tmp):
    delays = []
    for hint in (0, 4000, 20000):
        for _ in range(40):
            c, s, events = _session([FakeStream()])
            s.hint_ms = hint
            s.service(0)
            before = port.ticks_ms()
            s.mark_down("test")
            delays.append((hint, port.ticks_diff(s.retry_at, before)))
    for hint, d in delays:
        if hint:
            check(hint <= d <= 2 * hint + 50, f"hint {hint}: delay {d}")
        else:
            check(0 <= d <= 600, f"no hint: the backoff alone ({d})")
    spread = [d for h, d in delays if h == 20000]
    check(max(spread) - min(spread) > 2000, f"jittered over the window: {spread}")


def test_a_link_that_only_sends_qos0_pings_and_stays_up(tmp):
    stream, c, s, events = _up()
    # Up for 6 s, sending often (QoS 0: no replies), nothing heard for half the keepalive.
    c.last_rx = s.pinged = port.ticks_add(port.ticks_ms(), -6000)
    c.publish(b"t", b"x", 0)
    stream.take()
    s.service(0)
    equal(stream.take(), b"\xc0\x00", "PINGREQ although it sent a moment ago")
    s.service(0)
    equal(stream.take(), b"", "one ping per half keepalive, not one per loop")
    stream.feed(b"\xd0\x00")
    s.service(0)
    c.publish(b"t", b"x", 0)
    s.service(0)
    equal((s.state, events), (link.UP, ["up"]), "the PINGRESP keeps it up")


def test_close_without_a_status_topic(tmp):
    stream = FakeStream()
    c = mqtt.Client(b"d")
    c.wait = stream.wait
    c.close = stream.close
    s = link.Link(c, lambda: stream, 10, SUBS, None)
    s.service(0)
    stream.feed(b"\x20\x02\x00\x00")
    s.service(0)
    stream.take()
    s.close()
    equal(stream.take(), mqtt.DISCONNECT_PACKET, "only a DISCONNECT")
    equal((s.state, s.failures), (link.DOWN, 0), "a close is not a failure")


def test_connect_failures_are_counted_and_remembered(tmp):
    c, s, events = _session([])
    s.service(0)
    s.retry_at = port.ticks_ms()
    s.service(0)
    equal(s.failures, 2, "two failed connects")
    equal(s.last_error, "connect failed 111", "why")
