"""One run of the agent: build MQTT client, session, profile and agent around the buffer
consent.start() opened (build(), which the fleet simulator shares); run until the agent stops. Imported by main.py per run and unloaded afterwards (see main.py)."""

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
    if opener is None:
        host = ident["broker_host"]
        port_no = ident["broker_port"]
        certs = image + "/certs"
        opener = lambda: port.tls_connect(host, port_no, certs)  # noqa: E731
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


def run(image, ident, conf, records, emit, boot, consent):
    """Wire and run the agent once (build()). Returns (why it stopped, records produced). A
    MemoryError or any other exception propagates (main.py turns it into a reset) after a
    best-effort close."""
    app = build(image, ident, conf, records, emit, boot, consent)
    try:
        why = app.run()
    finally:
        # Everything that matters is on flash already; after a failure (even a MemoryError: a
        # fragmented heap can refuse a small block) main.py resets for a fresh heap.
        try:
            app.close()
        except Exception:  # noqa: BLE001 - closing is a courtesy to the broker
            pass
    emit({"event": "stopped", "why": why, "heap_rest": app.heap_rest, "heap_min": app.heap_min})
    return why, app.produced
