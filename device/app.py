"""One run of the agent: build buffer, MQTT client, session, profile and agent; run until
the agent stops. Imported by main.py per run and unloaded afterwards (see main.py)."""

from device import agent, buffer, link, mqtt, port
from device.profiles import load


def run(image, ident, conf, records, emit):
    """Wire and run the agent once. Returns (why it stopped, records produced)."""
    dev = ident["id"]
    buf = buffer.Buffer(image + "/data/buffer", dev)
    buf.open()
    client = mqtt.Client(dev.encode())
    host = ident["broker_host"]
    port_no = ident["broker_port"]
    certs = image + "/certs"
    t = "fleet/" + dev + "/"
    session = link.Link(
        client, lambda: port.tls_connect(host, port_no, certs), conf.get("keepalive_s"),
        [((t + "ack").encode(), 1), ((t + "config").encode(), 1)], (t + "status").encode())
    app = agent.Agent(dev, load(ident["profile"], dev, buf.last), buf, conf, client, session, emit,
                      records)
    port.collect()
    emit({"event": "boot", "id": dev, "impl": port.IMPL, "seq": buf.last, "acked": buf.acked,
          "buffered": buf.buffered, "dropped": buf.dropped, "repaired": buf.repaired,
          "heap_free": port.mem_free()})
    try:
        why = app.run()
    except MemoryError as e:
        # A fragmented heap can refuse even a small block. Everything that matters is on
        # flash, so start over with a fresh heap, as a board's watchdog reset would.
        why = "memory"
        port.print_exception(e)
    try:
        app.close()
    except (OSError, MemoryError):
        pass
    emit({"event": "stopped", "why": why, "heap_rest": app.heap_rest, "heap_min": app.heap_min})
    return why, app.produced
