"""One run of the agent: build MQTT client, session, profile and agent around the buffer
consent.start() opened. main.py imports it per run and unloads it again before the agent runs
(nothing here is needed then); the fleet simulator builds its agents with it too."""

from device import agent, link, mqtt, port
from device.profiles import load


def build(image, ident, conf, records, emit, boot, consent, opener=None, profile=None,
          clock=port):
    """The agent of one run, wired and not started. boot is (reset cause, resets, watchdog
    feed) from main.py, consent (rank of the tier, consent records logged in this
    incarnation, allowed metric names per tier, whether that changed now, the buffer it
    opened) from consent.start(). A board passes none of the rest; the fleet simulator passes
    its own non-blocking opener, the product's simulated user as profile and its data clock."""
    dev = ident["id"]
    # The buffer consent.start() opened (tagging with the record key's HMAC keys, computed
    # once for this start): opened once per start, flash read once.
    rank, logged, names, changed, buf = consent
    data = image + "/data"
    from device import hint

    hint_ms = hint.read(data)
    del hint
    port.unload("device.hint")
    client = mqtt.Client(dev.encode())
    if opener is None:  # made in port.py: a closure here would keep this module alive
        opener = port.tls_opener(ident["broker_host"], ident["broker_port"], image + "/certs")
    t = "fleet/" + dev + "/"
    session = link.Link(
        client, opener, conf.get("keepalive_s"),
        [((t + "ack").encode(), 1), ((t + "config").encode(), 1), (agent.HINT_TOPIC, 1)],
        (t + "status").encode(), 1)
    session.hint_ms = hint_ms
    # A profile resumes after the samples it took: the records, not the consent records.
    if profile is None:
        profile = load(ident["profile"], dev, buf.last - logged)
    app = agent.Agent(dev, profile, buf, conf, client, session, emit, records, clock)
    app.boot = boot
    app.data = data
    app.rank = rank
    app.names = names
    if changed:  # the first state says so (a button pressed before the start, a narrowing)
        app.why_up = "consent"
    port.collect()
    emit({"event": "boot", "id": dev, "impl": port.IMPL, "i": buf.incarnation, "seq": buf.last,
          "acked": buf.acked, "consent": agent.TIERS[rank], "allowed": len(names[rank]),
          "hint_ms": session.hint_ms,
          "buffered": buf.buffered, "dropped": buf.dropped, "repaired": buf.repaired,
          "heap_free": port.mem_free()})
    return app

