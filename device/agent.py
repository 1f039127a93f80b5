"""Application: sample the profile into the buffer, publish what the gateway has not acked,
apply acks and configs, report state. No sockets here (link.py), no wire details (mqtt.py).

Delivery: records leave the buffer as QoS 1 PUBLISHes, at most `max_inflight` beyond the last
application ack. The broker's PUBACK proves nothing about storage, so only the gateway's ack
(fleet/<id>/ack) frees records, and only an ack of the buffer's own incarnation (protocol.ack
v2: an ack of an older life of a wiped device is ignored); without progress for
`ack_timeout_ms`, and after every reconnect, everything unacked is sent again from the oldest
(the gateway dedupes by (device, incarnation, seq)). A new or wiped device samples at once,
from seq 1 of a new incarnation: it never waits for the gateway.

Records and states are tagged with the device's record key (protocol.tag, through codec.mac_tag;
its padded keys, computed once per start, are the buffer's `mac`).

Consent (device/consent.py): only the metrics the customer's tier allows (`allowed`, a tuple of
names computed at the start and after each change) reach the buffer; a sample with none left
is not buffered at all. A consent request (data/consent.request, the product's button) is
looked for about once a second. Vitals: the one state message carries why it was sent
("connect", "heartbeat" every heartbeat_s while the link is up, "config", "consent"), uptime,
the lowest free heap, the buffer's bytes on flash, reconnects, the tier and the hint.
The gateway's back-pressure hint (fleet/hint, retained) is kept in data/hint.json and applied
by link.py to every reconnect.
"""

import json

import device
from device import codec, mqtt, port
from device.port import const

RESTART_FOR_CONFIG = "config"
RESTART_FOR_CONSENT = "consent"  # too little heap to apply a request now: main.py applies it
_ALIVE_MS = const(2000)  # an "alive" event at least this often: the host runner's watchdog
# The state (protocol.state, version 2, with the vitals), the tag appended after. With every
# counter at its bound and 160 characters of reason and link error it stays within
# protocol.state.MAX_STATE_BYTES (tests/device checks it). Ids, words and versions are ours:
# no escaping; reason and link error come JSON-encoded.
_STATE = ('{"v":2,"d":"%s","i":%d,"t":%d,"impl":"%s","fw":"%s","profile":"%s",'
          '"config_version":%d,"config_status":"%s","reason":%s,"heap_free":%d,"buffered":%d,'
          '"dropped":%d,"seq":%d,"floor":%d,"reset_cause":"%s","resets":%d,"link_error":%s,'
          '"link_failures":%d,"why":"%s","uptime_s":%d,"heap_low":%d,"buffer_bytes":%d,'
          '"reconnects":%d,"consent":"%s","hint_ms":%d%s}')
_MAX_SIGNED = const(1024 - 40)  # protocol.state.MAX_STATE_BYTES less the tag
# The longest rest a profile may ask for: well inside MicroPython's ticks_add range (2**29).
_MAX_REST_MS = const(86400000)
_TELEMETRY = const(0)  # indexes of Agent.topics
_STATE_T = const(1)
_ACK = const(2)
_CONFIG = const(3)
_UPDATE = const(4)
_CHUNK = const(5)
_FETCH = const(6)
_MAX_PING = const(32)  # protocol.topics.MAX_PING_BYTES
_MAX_FRAME = const(16)  # protocol.bounds.MAX_FRAME_RECORDS (tests/device/t_frame.py pins it)
RESTART_FOR_UPDATE = "update"  # an update's heavy step needs a fresh heap: main.py runs it
HINT_TOPIC = b"fleet/hint"  # protocol.hint.TOPIC
TIERS = ("essential", "usage", "personal")  # protocol.consent.TIERS, narrowest first


def _topic(device_id, kind):
    return ("fleet/" + device_id + "/" + kind).encode()  # protocol.topics.topic()


class Agent:
    """The device's one loop, driven from outside: begin() once, then step() whenever the
    link has data or the wait it returned is over. run() is a board's plain loop around it;
    the fleet simulator steps thousands of agents from one selector loop (docs/simulator.md).

    Two clocks: `clock` (port on a board) times sampling and dates records, the data clock;
    port's ticks time the transport (keepalive, ack timeouts, heartbeats). The simulator
    hands in a data clock that runs faster than the wall clock. A profile's sample() may
    return None when the product is idle, and then its rest_ms(), if it has one, says how
    long (data ms) until it is worth asking again (a sensor that wakes on use does the same)."""

    def __init__(self, device_id, profile, buf, conf, client, session, emit, records=None,
                 clock=port):
        self.device_id = device_id
        self.profile = profile
        self.buf = buf
        self.conf = conf
        self.client = client
        self.link = session
        self.emit = emit
        self.to_produce = records  # sample until seq reaches this; None: forever
        self.produced = 0
        self.clock = clock
        # telemetry, state, ack, config, update, chunk, fetch (_TELEMETRY ...): one attribute
        self.topics = (_topic(device_id, "telemetry"), _topic(device_id, "state"),
                       _topic(device_id, "ack"), _topic(device_id, "config"),
                       _topic(device_id, "update"), _topic(device_id, "chunk"),
                       _topic(device_id, "fetch"))
        self.ota = None  # the update in hand (device/update.py): set by app.py
        self.sent = 0  # highest seq published since the last (re)start of sending
        self.progress_at = port.ticks_ms()  # ticks of the last ack progress (or resend)
        self.next_sample = clock.ticks_ms()  # data clock ticks (opaque values: never 0)
        self.stop = None  # set to RESTART_FOR_CONFIG to leave run()
        self.drained_at = -1  # acked seq at the last "drained" event
        self.heap_min = 0  # lowest free heap seen before a collection (~ peak use)
        self.heap_rest = 0  # free heap right after the last collection
        # (reset cause of this start, resets so far, the hardware watchdog's feed or None, the
        # firmware slot or None, its version or ""): set by app.py from main.py
        self.boot = ("none", 0, None, None, "")
        # Set by app.py: the data directory, the metric names each consent tier allows
        # (narrowest first) and the rank of the tier in effect. (Few attributes: a 30th grows
        # the instance's dict by 0.6 KB at once.)
        self.data = ""
        self.names = ((), (), ())  # type: tuple
        self.rank = 0  # "essential"
        self.why_up = "connect"  # why the next state on connecting is sent
        self.tick = self.progress_at  # uptime: whole seconds counted up to this tick
        self.uptime_s = 0
        self.beat_at = self.progress_at  # ticks of the last state published
        self.synced_at = self.alive_at = self.progress_at  # buffer sync, "alive" event
        client.on_publish = self._on_publish
        client.on_oversize = self._on_oversize
        session.on_up = self._on_up
        session.on_down = self._on_down

    # -- link events
    def _on_up(self):
        self.sent = self.buf.acked  # resend everything unacked, oldest first
        self.progress_at = port.ticks_ms()
        self.emit({"event": "connected", "connects": self.link.connects})
        why = self.why_up
        self.why_up = "connect"
        self.publish_state(why)

    def _on_down(self, reason):
        self.emit({"event": "disconnected", "reason": reason})

    def _on_publish(self, topic, payload, qos, retain):
        topics = self.topics
        if topic == topics[_CHUNK]:
            if self.ota is not None:
                self.ota.on_chunk(payload)
        elif topic == topics[_ACK]:
            try:
                inc, seq = codec.decode_ack(bytes(payload))
            except ValueError as e:
                self.emit({"event": "bad_ack", "reason": str(e)})
                return
            if inc != self.buf.incarnation:
                # Another life of this id (before a wipe), or a version 1 ack: not about these
                # records.
                self.emit({"event": "bad_ack", "reason": "incarnation " + str(inc)})
                return
            if self.ota is not None:
                self.ota.on_ack()
            if self.buf.ack(seq):
                self.progress_at = port.ticks_ms()
                if self.sent < self.buf.acked:
                    self.sent = self.buf.acked
        elif topic == topics[_UPDATE]:
            if payload:
                self.updater().on_offer(bytes(payload))
            elif self.ota is not None:
                self.ota.on_offer(b"")
        elif topic == topics[_CONFIG]:
            self._on_config(bytes(payload))
        elif topic == HINT_TOPIC:
            self._on_hint(payload)
        elif bytes(topic[-5:]) == b"/ping":  # the only other topic subscribed (app.py)
            # A technician's round trip (protocol.topics): a token of 1-32 printable ASCII bytes
            # goes back unchanged on the pong topic, QoS 0, copied from the receive buffer into
            # the send buffer; anything else gets no answer. Rare: its topic is made when used.
            n = len(payload)
            if 0 < n <= _MAX_PING:
                for i in range(n):
                    if not 0x20 <= payload[i] <= 0x7E:
                        return
                self.client.publish(topics[_ACK][:-3] + b"pong", payload, 0)

    def updater(self):
        """The update in hand (device/update.py), made when there is one: an offer came, or
        app.py found one on flash."""
        if self.ota is None:
            from device import update  # imported only for an update: its code stays off the heap

            self.ota = update.Updater(self.data[:-5], self.boot[3], self.emit)
        return self.ota

    def _on_hint(self, payload):
        try:
            from device import hint  # rare (once per connect: retained); unloaded again below

            self.link.hint_ms = hint.receive(self.data, payload, self.link.hint_ms, self.emit)
        except MemoryError:  # a fragmented heap: the retained hint comes again next connect
            self.emit({"event": "bad_hint", "reason": "not enough memory to read it now"})
        hint = None  # type: ignore[assignment]
        port.unload("device.hint")

    def _consent_request(self):
        """The product's button was pressed: apply (or refuse) data/consent.request."""
        done = None
        try:
            from device import consent  # rare; unloaded again below

            done = consent.request(self.data, self.buf, self.conf.version, self.emit)
            if done is not None:
                self.rank = consent.TIERS.index(done[0])
        except MemoryError:
            # Too fragmented now: stop, and main.py applies it first thing on a fresh heap
            # (the request stays; a change half made is finished there: consent.py).
            self.stop = RESTART_FOR_CONSENT
            self.emit({"event": "consent", "status": "deferred",
                       "reason": "not enough memory now; applied at the restart"})
        consent = None  # type: ignore[assignment]
        port.unload("device.consent")
        if done is not None and self.link.up:
            try:
                self.publish_state("consent")
            except (OSError, mqtt.MQTTError) as e:
                self.link.mark_down("publish failed " + str(e))

    def _on_oversize(self, topic, size):
        # Larger than any downlink may be (the cloud signs none that big), whatever its topic:
        # reported as a rejected config, where the operator looks.
        self._on_config(None, size)

    def _on_config(self, payload, size=0):
        from device import config  # rare; unloaded again below to keep the heap free

        if payload is None:
            action, version = config.too_large(self.conf, size, mqtt.MAX_DOWNLINK_BYTES)
        else:
            action, version = config.precheck(self.conf, payload)
        rejected = action == config.REJECT
        if action == config.STAGE:
            # Verification needs the heap to itself: staged on flash, main.py verifies it.
            self.stop = RESTART_FOR_CONFIG
            self.emit({"event": "config", "status": "staged", "version": version})
        elif rejected:
            self.emit({"event": "config", "status": "rejected", "version": version,
                       "reason": self.conf.reason})
        del config
        port.unload("device.config")
        if rejected:
            self.publish_state("config")

    # -- publishing
    def _clock(self, now):
        """Count whole seconds of uptime (no ticks wrap, no big ints)."""
        gone = port.ticks_diff(now, self.tick)
        if gone >= 1000:
            gone //= 1000
            self.uptime_s += gone
            self.tick = port.ticks_add(self.tick, gone * 1000)

    def publish_state(self, why):
        """The one state encoder (protocol.state, version 2, with the vitals); `why` is one of
        protocol.state.STATE_CAUSES. Raises OSError / MQTTError when the link fails."""
        port.collect()
        heap = port.mem_free()
        buf = self.buf
        link = self.link
        now = port.ticks_ms()
        self._clock(now)
        self.beat_at = now
        # protocol.state's encode checks the fields, dumps and tags them; the fields are ours
        # and tests check them with protocol.state.decode, so the device skips the import and
        # writes the JSON from one constant format (no dict of 26 entries on a small heap).
        # Only the two texts need JSON escaping.
        ota = self.ota
        update = ota.state_fields() if ota is not None else ""
        fw = self.boot[4] or device.__version__
        for cut in (160, 32):  # escapes made the texts long: say less of them
            reason = json.dumps(self.conf.reason[:cut])
            error = json.dumps(link.last_error[:cut])
            signed = (_STATE % (
                self.device_id, buf.incarnation, port.time_ms(), port.IMPL, fw,
                self.profile.name, self.conf.version, self.conf.status, reason, heap,
                buf.buffered, buf.dropped, buf.last, buf.floor, self.boot[0], self.boot[1],
                error, link.failures, why, self.uptime_s, self.heap_min, buf.bytes,
                link.connects - 1 if link.connects else 0, TIERS[self.rank], link.hint_ms,
                update)).encode()
            if len(signed) <= _MAX_SIGNED:
                break
        del reason, error  # garbage now, reclaimable below
        # protocol.tag.append's bytes, handed over in pieces: no copy of the state is made.
        self.client.publish(self.topics[_STATE_T], (memoryview(signed)[:-1], codec.HEAD,
                                           codec.mac_tag(buf.mac, signed), codec.TAIL), 1)
        if ota is not None:
            ota.changed = False
            ota.on_state_sent()
        self.emit({"event": "state", "heap_free": heap, "heap_min": self.heap_min,
                   "buffered": buf.buffered, "seq": buf.last})

    def _pump(self):
        """Publish unacked records while the window has room."""
        buf = self.buf
        room = self.conf.get("max_inflight") - (self.sent - buf.acked)
        if room <= 0 or self.sent >= buf.last:
            return
        if self.sent == buf.acked:
            # Nothing was in flight: the ack timer starts now, not at the last ack (which may be
            # hours old after an idle product, and would make this first send a "resend").
            self.progress_at = port.ticks_ms()
        # At most a frame's worth per turn: the records read from flash are garbage once sent,
        # and the turn's collection (_measure_heap) reclaims them before the next ones.
        records = buf.unacked(self.sent, min(room, _MAX_FRAME))
        client = self.client
        topic = self.topics[_TELEMETRY]
        # A backlog leaves in frames (protocol.frame) built in the client's send buffer: as many
        # records as fit in each message (pos: where the frame in it ends; n records in it).
        framing = buf.last - self.sent > 1 and room > 1
        pos = n = last = 0
        try:
            for seq, payload in records:
                at = mqtt.frame_put(client, topic, pos, payload) if framing and n < _MAX_FRAME else 0
                if n and not at:  # full: it leaves, this record starts the next one
                    mqtt.frame_send(client, topic, pos)
                    self.sent = last
                    pos = n = 0
                    at = mqtt.frame_put(client, topic, 0, payload)
                if not at:  # no backlog, or a record larger than any frame: alone
                    client.publish(topic, payload, 1)
                    self.sent = seq
                    continue
                pos = at
                n += 1
                last = seq
            if n:
                mqtt.frame_send(client, topic, pos)
                self.sent = last
        finally:
            records.close()

    # -- main loop
    def _sample(self):
        clock = self.clock
        now = clock.ticks_ms()
        interval = self.conf.get("interval_ms")
        if clock.ticks_diff(now, self.next_sample) < 0:
            return
        if self.to_produce is not None and self.buf.last >= self.to_produce:
            return
        metrics = self.profile.sample()
        if metrics is None:  # idle: ask again after the profile's rest, if it knows one
            rest = self.profile.rest_ms() if hasattr(self.profile, "rest_ms") else 0
            self.next_sample = clock.ticks_add(now, min(max(rest, interval), _MAX_REST_MS))
            return
        # Consent before the buffer: what the customer did not agree to never touches flash.
        allowed = self.names[self.rank]
        keep = 0
        for name in metrics:
            if name in allowed:
                keep += 1
        if keep < len(metrics):
            kept = {}
            if keep:
                for name in metrics:
                    if name in allowed:
                        kept[name] = metrics[name]
            metrics = kept
        if metrics:  # nothing allowed (every metric at "essential"): no record at all
            try:
                self.buf.put(clock.time_ms(), metrics)
            except ValueError as e:  # a profile bug must not stop the device
                self.emit({"event": "bad_sample", "reason": str(e)})
        del metrics
        self.produced += 1
        if self.buf.last == self.to_produce:
            self.emit({"event": "produced", "records": self.produced, "seq": self.buf.last})
        self.next_sample = clock.ticks_add(self.next_sample, interval)
        if clock.ticks_diff(now, self.next_sample) > interval:
            self.next_sample = clock.ticks_add(now, interval)  # fell behind: do not burst

    def _watch(self, now):
        buf = self.buf
        if self.sent > buf.acked and port.ticks_diff(now, self.progress_at) > \
                self.conf.get("ack_timeout_ms"):
            self.emit({"event": "resend", "from": buf.acked + 1, "sent": self.sent})
            self.sent = buf.acked
            self.progress_at = now
        if buf.buffered == 0 and buf.acked != self.drained_at and buf.acked and \
                self.to_produce is not None and self.buf.last >= self.to_produce:
            self.drained_at = buf.acked
            buf.sync()
            self.emit({"event": "drained", "acked": buf.acked, "heap_rest": self.heap_rest,
                       "heap_min": self.heap_min})

    def _measure_heap(self):
        free = port.mem_free()  # before collecting: the high-water mark of this loop
        if free < self.heap_min:
            self.heap_min = free
        port.collect()
        self.heap_rest = port.mem_free()

    def begin(self):
        """Once, before the first step()."""
        now = port.ticks_ms()
        self.next_sample = self.clock.ticks_ms()
        self.synced_at = self.alive_at = self.tick = self.beat_at = now
        port.collect()
        self.heap_min = self.heap_rest = port.mem_free()

    def step(self):
        """One turn of the loop (the link itself is serviced by the caller, link.service).
        Returns how long (transport ms, at most 200) nothing needs doing unless the link brings
        data or the next sample is due (sample_in())."""
        now = port.ticks_ms()
        self._clock(now)
        if port.ticks_diff(now, self.synced_at) > 1000:
            self.synced_at = now
            self.buf.sync()
            if port.exists(self.data + "/consent.request"):
                self._consent_request()
        if self.link.up and port.ticks_diff(now, self.beat_at) >= \
                self.conf.get("heartbeat_s") * 1000:
            try:
                self.publish_state("heartbeat")
            except (OSError, mqtt.MQTTError) as e:
                self.link.mark_down("publish failed " + str(e))
        if port.ticks_diff(now, self.alive_at) >= _ALIVE_MS:
            self.alive_at = now
            feed = self.boot[2]
            if feed is not None:
                feed()
            self.emit({"event": "alive", "seq": self.buf.last, "acked": self.buf.acked,
                       "up": self.link.up, "heap_free": self.heap_rest})
        self._sample()
        buf = self.buf
        if self.link.up:
            try:
                self._pump()
                if self.ota is not None:
                    self._update(now)
            except (OSError, mqtt.MQTTError) as e:
                self.link.mark_down("publish failed " + str(e))
        if self.ota is not None and self.ota.stop and self.stop is None:
            self.stop = RESTART_FOR_UPDATE  # main.py runs install.py on a fresh heap
            self.emit({"event": "update", "status": "stopping"})
        self._watch(port.ticks_ms())
        self._measure_heap()
        if self.link.up and self.sent < buf.last and \
                self.sent - buf.acked < self.conf.get("max_inflight"):
            return 0
        return 200

    def _update(self, now):
        """The update's part of a turn: report a change, ask for the next bytes."""
        ota = self.ota
        if ota is None:
            return
        if ota.changed:
            self.publish_state("update")
        ask = ota.fetch(now)
        if ask is not None:
            self.client.publish(self.topics[_FETCH], ask, 0)
        if ota.idle():
            # Done: its code and state leave the heap, and the lowest free heap is measured
            # afresh (the update's own work is not the new version's appetite: the cloud
            # compares this figure with the one before the update).
            self.ota = None
            port.unload("device.update")
            port.collect()
            self.heap_min = port.mem_free()
            self.emit({"event": "update", "status": "idle"})

    def sample_in(self):
        """Data clock ms until the next sample is due (0: now); a large value once a run of
        `records` is complete."""
        if self.to_produce is not None and self.buf.last >= self.to_produce:
            return _MAX_REST_MS
        return max(0, self.clock.ticks_diff(self.next_sample, self.clock.ticks_ms()))

    def run(self):
        """A board's loop: until a staged config needs verifying (returns RESTART_FOR_CONFIG)
        or a consent request a fresh heap (RESTART_FOR_CONSENT). Here the data clock is the
        transport's (port), so the sample's wait is a transport wait too."""
        self.begin()
        while self.stop is None:
            wait = self.step()
            if wait:
                wait = min(wait, self.sample_in())
            self.link.service(wait)
        return self.stop

    def close(self):
        self.link.close()
        self.buf.close()
        closer = getattr(self.profile, "close", None)
        if closer:
            closer()
