"""MQTT ingest: every device message is decoded, deduplicated and durably committed before the
broker gets its PUBACK and the device gets its application ack.

Two threads:
- paho's network thread (loop_start) only queues messages (on_message never touches disk);
- the committer (`run`) takes them in groups (up to `commit_max`, or what arrives within
  `commit_window_s`), decodes, dedupes by (device, seq), commits the group in one SQLite
  transaction, THEN PUBACKs each message (manual_ack) and publishes one protocol.ack per
  device with its highest contiguous stored seq. The broker's in-flight window must be at least
  `commit_max`, or a group can never fill (Mosquitto's default is 20).

Update fetches (fleet/+/fetch, QoS 0) never enter the commit queue: the network thread hands
them to `on_fetch` (gateway.ota_serve), which only queues them, so a download never delays a
commit. Pongs (fleet/+/pong, QoS 0, a device's answer to a technician's ping, read by
gateway.ping) are dropped there too.

A telemetry message is one record or a frame of records (protocol.frame); each record of a
frame is decoded, deduplicated and stored on its own, and a bad one is refused alone.

Speed (fleetloop bench gateway measures it next to a bare paho subscriber): the network thread
only wraps and queues each message (a named tuple into a SimpleQueue); the committer decodes
with protocol's checks, commits the group, then PUBACKs the whole group in one write
(puback_all) and publishes one ack per stream.

Bad payloads (not JSON, wrong fields, out-of-range integers, device id not matching the topic)
are counted, logged with the reason (rate limited) and PUBACKed so they do not jam the session;
nothing is stored. The checks are protocol's own (record.decode, state.decode), no stricter and no
looser, so what this gateway acks the cloud can store: a state with vitals out of their bounds
(a heap beyond a GiB, an uptime of centuries, an unknown consent tier) or a consent record with
an unknown tier is refused like any bad payload. A consent record (`c` in place of `m`) is a
record like any other here: same dedupe, ack and batch, its bytes forwarded untouched. One
message never stops the others: a message whose handling fails in an unexpected way is refused
on its own, like a bad payload. Each device's latest accepted state also updates its row of
vitals (store.device_vitals) in the same commit, for `diag`.
"""

from __future__ import annotations

import enum
import logging
import queue
import sqlite3
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.errors import GatewayError, StoreError
from gateway.ratelog import RateLimitedLog
from gateway.seqs import SeqTracker
from gateway.store import DeviceVitals, InboxRecord, InboxState, Store, Stream, TrackerChange
from protocol import ack as ack_codec
from protocol import frame as frame_codec
from protocol import record as record_codec
from protocol import state as state_codec
from protocol import topics

log = logging.getLogger("fleetloop.gateway.ingest")
_reject_log = RateLimitedLog(log)


@dataclass(frozen=True)
class MqttParams:
    host: str
    port: int
    client_id: str
    ca_cert: Path
    cert: Path
    key: Path
    keepalive_s: int = 30


class LinkState(enum.Enum):
    DOWN = "down"
    CONNECTING = "connecting"
    UP = "up"


class Inbound(NamedTuple):
    """One message as the network thread hands it over. A named tuple, not a frozen dataclass:
    one is made per message on the thread that also reads the socket, and it costs a fifth."""

    generation: int  # connection the message arrived on: a mid means nothing on another one
    mid: int
    qos: int
    topic: str
    payload: bytes


class Rejected(GatewayError):
    """A message that is refused (counted, logged, acked, not stored)."""


_MAX_REASONS = 50
_MAX_TOPICS = 100_000  # topics whose parse is remembered (a few per device)
_FETCH_SUFFIX = "/" + topics.FETCH
_PONG_SUFFIX = "/" + topics.PONG


@dataclass
class _Group:
    """What one commit group accepted, before it is committed."""

    records: list[InboxRecord]
    states: list[InboxState]
    working: dict[Stream, tuple[SeqTracker, SeqTracker]]  # stream -> (before, after)
    stored: Counter[Stream]
    ack_streams: set[Stream]
    status: dict[str, str]
    vitals: dict[str, DeviceVitals] = field(default_factory=dict)  # each device's latest state
    duplicates: int = 0
    rejected: int = 0


def _decode_own(decode: Callable[[bytes], dict[str, Any]], payload: bytes, device: str,
                what: str) -> dict[str, Any]:
    """Decode an uplink payload that must speak for the device whose topic carried it: the
    ACL proves the publisher owns the topic, this proves the payload does not claim another id."""
    try:
        obj = decode(payload)
    except ValueError as exc:
        raise Rejected(f"bad {what}: {exc}") from None
    if obj["d"] != device:
        raise Rejected(f"{what} device does not match the topic")
    return obj


_PUBACK = struct.Struct("!BBH")


def puback_all(client: mqtt.Client, mids: list[int]) -> None:
    """PUBACK every QoS 1 message of `mids` in one write. paho's ack() queues one 4-byte
    packet per message, and its network thread writes each as its own TLS record: at tens of
    thousands of messages a second that was a good share of the gateway's time. paho's queue
    takes any bytes (a PUBACK carries no state on the client side), so the group's PUBACKs go
    as one; with a paho without that queue, one ack() each."""
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None or not mids:
        for mid in mids:
            client.ack(mid, 1)
        return
    queue_packet(mqtt.PUBACK, b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids]), 0, 1)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Ingest:
    def __init__(self, store: Store, params: MqttParams, commit_max: int = 500,
                 commit_window_s: float = 0.005,
                 on_stored: Callable[[int], None] = lambda n: None,
                 clock_ms: Callable[[], int] = _now_ms,
                 revoked: Callable[[str], bool] = lambda device: False,
                 on_fetch: Callable[[str, bytes], None] | None = None,
                 low_space: Callable[[], str | None] = lambda: None,
                 on_write: Callable[[BaseException | None], object] = lambda exc: None,
                 on_refused: Callable[[str, str, bytes], None] = lambda t, why, p: None) -> None:
        # gateway.disk: why a commit must wait for space (then nothing is acked), and each
        # commit's outcome; gateway.quarantine: every refused message (topic, reason, payload).
        self._low_space = low_space
        self._on_write = on_write
        self._on_refused = on_refused
        self._store = store
        self._on_fetch = on_fetch  # gateway.ota_serve: update fetches, never committed here
        self._revoked = revoked  # gateway.revocation: devices the cloud revoked
        self._params = params
        self._commit_max = commit_max
        self._commit_window_s = commit_window_s
        self._on_stored = on_stored
        self._clock_ms = clock_ms
        # SimpleQueue: put() is one C call, no lock of ours, on the thread that reads the socket.
        self._queue: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self._parsed: dict[str, tuple[str, str]] = {}  # topic -> (device, kind) of valid topics
        self._client: mqtt.Client | None = None
        self._trackers: dict[Stream, SeqTracker] = {}
        self._lock = threading.Lock()  # guards the fields below (read by the status thread)
        self._state = LinkState.DOWN
        self._generation = 0
        self._connects = 0
        self._online: dict[str, bool] = {}
        self._records = 0
        self._states = 0
        self._duplicates = 0
        self._given_up = 0
        self._rejected = 0
        self._reasons: Counter[str] = Counter()
        self._last_commit_ms = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Load the seq registry and connect (paho keeps reconnecting in its own thread)."""
        self._trackers = self._store.load_trackers()
        self._connect()

    def _connect(self) -> None:
        p = self._params
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=p.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        client.tls_set(ca_certs=str(p.ca_cert), certfile=str(p.cert), keyfile=str(p.key),
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        with self._lock:
            self._state = LinkState.CONNECTING
        client.connect_async(p.host, p.port, keepalive=p.keepalive_s)
        client.loop_start()

    def stop(self) -> None:
        """Disconnect; call after the committer stopped. Unacked messages stay in the broker
        session and come back (as duplicates, acked again) on the next start."""
        client = self._client
        if client is None:
            return
        with self._lock:
            self._state = LinkState.DOWN  # an expected disconnect: do not warn about it
        client.disconnect()
        client.loop_stop()

    def resync(self) -> None:
        """After the committer crashed: reconnect, so the broker redelivers every message whose
        PUBACK was never sent (else they would sit in its in-flight window until a reconnect)."""
        log.warning("reconnecting to the broker to get unacknowledged messages again")
        self.stop()
        self._connect()

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the gateway's connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
            self._connects += 1
        # Update fetches are QoS 0 requests for bytes (protocol.ota): nothing to keep for the
        # gateway while it is away, and nothing to acknowledge after a commit.
        # Pongs too: the answer to a ping is only worth anything now.
        client.subscribe([(topics.subscription(kind),
                           0 if kind in (topics.FETCH, topics.PONG) else 1)
                          for kind in topics.UPLINK])
        log.info("connected to the broker (session present: %s)", flags.session_present)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        # Up only once the broker confirmed the subscriptions: before that, a first-ever
        # session would miss what devices publish.
        if any(r.is_failure for r in reasons):
            log.error("broker refused the gateway's subscriptions: %s", reasons)
            return
        with self._lock:
            if self._state is not LinkState.DOWN:
                self._state = LinkState.UP

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._lock:
            if self._state is LinkState.DOWN:
                return  # we asked for it (stop)
            if self._state is LinkState.UP:
                log.warning("disconnected from the broker: %s", reason)
            self._state = LinkState.CONNECTING

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = ""
        if topic.endswith(_PONG_SUFFIX):
            # A device's answer to a technician's `gateway ping` (gateway.ping reads it with
            # its own identity): never a record, so it never reaches the commit queue.
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        if topic.endswith(_FETCH_SUFFIX) and self._on_fetch is not None:
            # Handed over without touching the commit queue: a download never delays telemetry.
            if msg.qos:  # a session subscribed at QoS 1 by an older gateway
                client.ack(msg.mid, msg.qos)
            try:
                self._on_fetch(topic, bytes(msg.payload))
            except Exception:  # this thread carries every device's telemetry: never let it die
                log.exception("update fetch handler failed on %r", topic[:200])
            return
        self._queue.put(Inbound(self._generation, msg.mid, msg.qos, topic, bytes(msg.payload)))

    # -- committer -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Commit and acknowledge message groups until `stop` is set and what was queued by
        then is committed. Devices that keep sending would otherwise never let the queue run
        dry; what arrives after the stop stays unacknowledged in the broker's session and
        comes again at the next start (a duplicate there, acked again)."""
        left: int | None = None  # messages still to commit once stop is set
        while True:
            if stop.is_set():
                if left is None:
                    left = self._queue.qsize()
                if left <= 0:
                    return
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            group = [first]
            deadline = time.monotonic() + self._commit_window_s
            while len(group) < self._commit_max:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        group.append(self._queue.get(timeout=remaining))
                    except queue.Empty:
                        break
            self._commit_group(group, stop)
            if left is not None:
                left -= len(group)

    def _commit_group(self, messages: list[Inbound], stop: threading.Event) -> None:
        now = self._clock_ms()
        group = _Group([], [], {}, Counter(), set(), {})
        for m in messages:
            try:
                self._classify(m, group, now)
            except Rejected as exc:
                self._refuse(m, group, str(exc))
            except Exception as exc:  # one message must never stop the others
                log.exception("unexpected error handling a message on %r", m.topic[:200])
                self._refuse(m, group, f"internal error: {type(exc).__name__}")
        changes = [TrackerChange(stream, before, after, group.stored[stream], now)
                   for stream, (before, after) in group.working.items()]
        while self._low_space() is not None:  # gateway.disk: hold the group, unacked
            if stop.wait(0.5):
                return  # not acked: the broker redelivers them to the next session
        delay = 0.05
        while True:
            try:
                self._store.commit_ingest(group.records, group.states, changes,
                                          group.vitals.values())
                self._on_write(None)
                break
            except (sqlite3.Error, StoreError) as exc:  # disk full, locked: keep unacked, retry
                self._on_write(exc)
                log.error("ingest commit failed (%s); retrying in %.2fs", exc, delay)
                if stop.wait(delay):
                    return  # not acked: the broker redelivers them to the next session
                delay = min(delay * 2, 5.0)
        with self._lock:
            for dev, (before, after) in group.working.items():
                self._trackers[dev] = after
                self._given_up += after.skipped - before.skipped
            self._records += len(group.records)
            self._states += len(group.states)
            self._duplicates += group.duplicates
            self._rejected += group.rejected
            self._online.update((d, s == "online") for d, s in group.status.items())
            self._last_commit_ms = now
            generation = self._generation
        self._acknowledge(messages, group, generation)
        if group.records or group.states:
            self._on_stored(len(group.records) + len(group.states))

    def _refuse(self, m: Inbound, group: _Group, why: str, part: bytes | None = None) -> None:
        """The one place a message, or one record of a frame (`part`), is refused."""
        group.rejected += 1
        reason = why[:120]
        with self._lock:  # reasons can carry device-chosen text: keep the table bounded
            if reason not in self._reasons and len(self._reasons) >= _MAX_REASONS:
                reason = "other reasons"
            self._reasons[reason] += 1
        _reject_log.warning("refused message on %r: %s", m.topic[:200], why)
        # gateway.quarantine: queued, never blocks; of a frame, only the refused record
        self._on_refused(m.topic, why, m.payload if part is None else part)

    def _classify(self, m: Inbound, group: _Group, now: int) -> None:
        device, kind = self._parse(m.topic)
        if self._revoked(device):  # until the broker's CRL refuses it
            raise Rejected("device revoked")
        if kind == topics.TELEMETRY:
            if not frame_codec.is_frame(m.payload):
                self._take_record(m.payload, device, group, now)
                return
            try:
                parts = frame_codec.split(m.payload)
            except ValueError as exc:
                raise Rejected(f"bad frame: {exc}") from None
            for part in parts:  # one bad record of a frame is refused alone
                try:
                    self._take_record(part, device, group, now)
                except Rejected as exc:
                    self._refuse(m, group, str(exc), part)
        elif kind == topics.STATE:
            st = _decode_own(state_codec.decode, m.payload, device, "state")
            group.states.append(InboxState(device, m.payload, now))
            group.vitals[device] = DeviceVitals.from_state(st, now)
            stream = (device, st.get("i", 0))
            pair = self._working(group, stream)
            if "floor" in st:
                pair[1].claim_floor(st["floor"])
            group.ack_streams.add(stream)  # every state is answered: the device learns its ack
        elif kind == topics.STATUS:
            if m.payload in (b"online", b"offline"):
                group.status[device] = m.payload.decode()
            elif m.payload == b"":
                group.status[device] = "offline"  # retained status cleared
            else:
                raise Rejected("status must be 'online' or 'offline'")
        elif kind == topics.FETCH:
            raise Rejected("update fetches are not served by this gateway")
        elif kind == topics.PONG:
            return  # a device's answer to a technician's `gateway ping`: not for the gateway
        else:
            raise Rejected(f"{kind} is a downlink topic")

    def _parse(self, topic: str) -> tuple[str, str]:
        """(device, kind) of a fleet topic, remembered: the broker's ACL lets each device write a
        handful of topics, so the table stays as small as the fleet (and is cleared if not)."""
        parsed = self._parsed.get(topic)
        if parsed is None:
            try:
                parsed = topics.parse(topic)
            except ValueError as exc:
                raise Rejected(f"bad topic: {exc}") from None
            if len(self._parsed) >= _MAX_TOPICS:
                self._parsed.clear()
            self._parsed[topic] = parsed
        return parsed

    def _take_record(self, payload: bytes, device: str, group: _Group, now: int) -> None:
        """One record (alone or out of a frame): decoded, deduplicated, kept for the commit."""
        rec = _decode_own(record_codec.decode, payload, device, "record")
        stream = (device, record_codec.incarnation(rec))
        pair = self._working(group, stream)
        group.ack_streams.add(stream)
        if pair[1].accept(rec["s"]):
            group.records.append(InboxRecord(device, rec["s"], payload, now))
            group.stored[stream] += 1
        else:
            group.duplicates += 1

    def _working(self, group: _Group, stream: Stream) -> tuple[SeqTracker, SeqTracker]:
        pair = group.working.get(stream)
        if pair is None:
            before = self._trackers.get(stream) or SeqTracker()
            pair = group.working[stream] = (before, before.copy())
        return pair

    def _acknowledge(self, messages: list[Inbound], group: _Group, generation: int) -> None:
        """The one place acks leave, after the commit: the broker's PUBACKs, then each stream's
        application ack."""
        client = self._client
        if client is None:
            return
        puback_all(client, [m.mid for m in messages if m.qos == 1 and m.generation == generation])
        for dev, inc in group.ack_streams:
            tracker = self._trackers.get((dev, inc))
            client.publish(topics.topic(dev, topics.ACK),
                           ack_codec.encode(tracker.acked if tracker else 0, inc), qos=1)

    # -- for the downlink and the status endpoint -----------------------------------------
    def publish(self, topic: str, payload: bytes, retain: bool, timeout_s: float = 10.0) -> bool:
        """Publish QoS 1 and wait for the broker's PUBACK; False if it did not come in time."""
        client = self._client
        if client is None:
            return False
        info = client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def send(self, topic: str, payload: bytes) -> bool:
        """Publish QoS 0 without waiting (update chunks); False if the link is down."""
        client = self._client
        if client is None:
            return False
        return client.publish(topic, payload, qos=0).rc == mqtt.MQTT_ERR_SUCCESS

    def acked(self, device: str, incarnation: int = 0) -> int:
        tracker = self._trackers.get((device, incarnation))
        return tracker.acked if tracker else 0

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "link": self._state.value,
                "connects": self._connects,
                "records": self._records,
                "states": self._states,
                "duplicates": self._duplicates,
                "dropped_on_device": self._given_up,
                "rejected": self._rejected,
                "reject_reasons": dict(self._reasons.most_common()),
                "last_commit_ms": self._last_commit_ms or None,
                "queued": self._queue.qsize(),
            }

    def connection(self) -> int | None:
        """The number of the gateway's current broker connection while it is up, else None
        (a new number means a new connection: what was published before may be gone)."""
        with self._lock:
            return self._generation if self._state is LinkState.UP else None

    def registered_devices(self) -> int:
        """Distinct devices in the seq registry (every incarnation counted once per device)."""
        with self._lock:
            return len({dev for dev, _ in self._trackers})

    def devices(self) -> tuple[list[str], set[str]]:
        """(online device ids, every device id seen on a status or telemetry topic)."""
        with self._lock:
            online = sorted(d for d, up in self._online.items() if up)
            seen = set(self._online) | {dev for dev, _ in self._trackers}
        return online, seen
