"""One run of the agent: build MQTT client, session, profile and agent around the buffer
consent.start() opened. main.py imports it per run and unloads it again before the agent runs
(nothing here is needed then); the fleet simulator builds its agents with it too."""

from device import agent, link, mqtt, port
from device.profiles import load


def _update_due(image):
    """True when this start has an update in hand: a trial to commit, a rollback to report, a
    download to resume, or a last word the gateway has not acknowledged yet. Otherwise the
    agent imports device/update.py only when an offer comes: asked here (this module is
    unloaded before the agent runs), the question costs the running heap nothing."""
    try:
        boot = port.read_bytes(image + "/fw/boot.json")
        if b'"trial"' in boot or b'"rolled_back"' in boot:
            return True
    except OSError:
        pass
    if port.exists(image + "/data/ota/offer.json"):
        return True
    try:
        return b'"told"' not in port.read_bytes(image + "/data/ota/status.json")
    except OSError:
        return False


def _slot_version(image, slot):
    """The version of the running slot (fw/boot.json): what the state reports. On a board it
    is the slot's stamped device.__version__; a simulated device runs the host's code."""
    if slot is None:
        return ""
    try:
        import json

        return str(json.loads(port.read_bytes(image + "/fw/boot.json")).get(slot, ""))
    except (OSError, ValueError):
        return ""


def build(image, ident, conf, records, emit, boot, consent, opener=None, profile=None,
          clock=port, slot=None):
    """The agent of one run, wired and not started. boot is (reset cause, resets, watchdog
    feed) from main.py, consent (rank of the tier, consent records logged in this
    incarnation, allowed metric names per tier, whether that changed now, the buffer it
    opened) from consent.start(). A board passes none of the rest; the fleet simulator passes
    its own non-blocking opener, the product's simulated user as profile and its data clock.
    slot is the firmware slot the first stage booted (None: no slots, no updates)."""
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
    # The update topics, the ping and the hint may be refused by a gateway too old to know them.
    session = link.Link(
        client, opener, conf.get("keepalive_s"),
        [((t + "ack").encode(), 1), ((t + "config").encode(), 1), ((t + "update").encode(), 1),
         ((t + "chunk").encode(), 0), ((t + "ping").encode(), 0), (agent.HINT_TOPIC, 1)],
        (t + "status").encode(), 4)
    session.hint_ms = hint_ms
    # A profile resumes after the samples it took: the records, not the consent records.
    if profile is None:
        profile = load(ident["profile"], dev, buf.last - logged)
    app = agent.Agent(dev, profile, buf, conf, client, session, emit, records, clock)
    app.boot = boot + (slot, _slot_version(image, slot))
    app.data = data
    app.rank = rank
    app.names = names
    if changed:  # the first state says so (a button pressed before the start, a narrowing)
        app.why_up = "consent"
    if slot is not None and _update_due(image):
        app.updater()
    port.collect()
    emit({"event": "boot", "id": dev, "impl": port.IMPL, "i": buf.incarnation, "seq": buf.last,
          "acked": buf.acked, "consent": agent.TIERS[rank], "allowed": len(names[rank]),
          "hint_ms": session.hint_ms,
          "buffered": buf.buffered, "dropped": buf.dropped, "repaired": buf.repaired,
          "heap_free": port.mem_free()})
    return app

