"""One run of the agent: build buffer, MQTT client, session, profile and agent; run until
the agent stops. Imported by main.py per run and unloaded afterwards (see main.py)."""

from device import agent, buffer, codec, link, mqtt, port
from device.profiles import load


def run(image, ident, conf, records, emit, boot, consent):
    """Wire and run the agent once. Returns (why it stopped, records produced). boot is
    (reset cause, resets, watchdog feed) from main.py, consent (tier, consent records logged
    in this incarnation, allowed metric names per tier, whether that changed now) from
    consent.start(). A MemoryError or any other exception
    propagates (main.py turns it into a reset) after a best-effort close."""
    dev = ident["id"]
    # The record key (provisioned into the image, 0600): its HMAC keys, computed once for this
    # start, tag every record and state. start.py has checked that the key is there.
    buf = buffer.Buffer(image + "/data/buffer", dev,
                        codec.mac_key(port.read_bytes(image + "/keys/record.key")))
    buf.open()
    data = image + "/data"
    tier, logged, names, changed = consent
    rank = ("essential", "usage", "personal").index(tier)
    from device import hint

    hint_ms = hint.read(data)
    del hint
    port.unload("device.hint")
    client = mqtt.Client(dev.encode())
    host = ident["broker_host"]
    port_no = ident["broker_port"]
    certs = image + "/certs"
    t = "fleet/" + dev + "/"
    session = link.Link(
        client, lambda: port.tls_connect(host, port_no, certs), conf.get("keepalive_s"),
        [((t + "ack").encode(), 1), ((t + "config").encode(), 1), (agent.HINT_TOPIC, 1)],
        (t + "status").encode(), 1)
    session.hint_ms = hint_ms
    # A profile resumes after the samples it took: the records, not the consent records.
    app = agent.Agent(dev, load(ident["profile"], dev, buf.last - logged), buf, conf, client,
                      session, emit, records)
    app.boot = boot
    app.data = data
    app.rank = rank
    app.names = names
    if changed:  # the first state says so (a button pressed before the start, a narrowing)
        app.why_up = "consent"
    port.collect()
    emit({"event": "boot", "id": dev, "impl": port.IMPL, "i": buf.incarnation, "seq": buf.last,
          "acked": buf.acked, "consent": tier, "allowed": len(names[rank]),
          "hint_ms": session.hint_ms,
          "buffered": buf.buffered, "dropped": buf.dropped, "repaired": buf.repaired,
          "heap_free": port.mem_free()})
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
