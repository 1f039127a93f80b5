"""Device -> gateway reported state: sent on connect, after every config or consent decision,
and every `heartbeat_s` seconds as the device's vitals (one message, one encoder).

Wire, version 2 (JSON object, published QoS 1 on fleet/<id>/state; any key order, the
device's tag last - protocol.tag):
    {"v":2,"d":"bike-1","i":1234567,"t":1732345678123,"impl":"micropython","fw":"0.1.0",
     "profile":"bike","config_version":3,"config_status":"applied","reason":"",
     "heap_free":40211,"buffered":0,"dropped":0,"seq":120,"floor":121,"h":"<32 hex>"}
`i` is the incarnation the seqs, the floor and the dropped count belong to (protocol.record).
Version 1 (no i, no h) is still decoded for devices on older firmware.
config_status is one of: "none" (nothing applied yet), "applied", "rejected"; `reason` says why
a config was rejected (empty otherwise). `floor` is the lowest seq the device still holds or
will send: every seq below it is either acked or gone for good (dropped when the buffer was
full), so the gateway may move its contiguous ack up to floor - 1 instead of waiting forever
for a record that no longer exists. `reset_cause` says why the device last (re)started (one of
RESET_CAUSES: "none" for a plain start, "power" for a cut, "watchdog", "memory", "crash", or
"requested" for its own planned reset) and `resets` counts its resets so far; `link_error` is
why its MQTT link last failed since it started ("" if never: a TLS error, a refused connection
or subscription) and `link_failures` how often.

Vitals (all optional, for older firmware): `why` the state was sent (STATE_CAUSES), `uptime_s`
since the device's last (re)start, `heap_low` the lowest free heap seen since then, or since
it finished an update (the update's own work is not the new version's appetite; bytes),
`buffer_bytes` what the buffer holds on flash, `reconnects` connections made after the first
since the start, `consent` the tier in effect (protocol.consent), `hint_ms` the back-pressure
hint it applies to reconnects (protocol.hint), `rssi` the link's signal in dBm where the port
has one.

Update (all optional; protocol.ota): `update` the device's own word for the update it is on
(ota.DEVICE_STATUSES), `update_id` the offer's id, `update_version` the version it installs,
`update_progress` the percent downloaded (0-100), `update_reason` why it rolled back or failed
("" otherwise). Values outside their bounds (absurd heaps, an uptime of centuries) are refused like
unknown fields.
"""

import json

from protocol import consent as consent_tiers
from protocol import ota
from protocol import tag as tag_codec
from protocol.bounds import MAX_COUNTER, MAX_SEQ, MAX_TIME_MS
from protocol.hint import MAX_HINT_MS
from protocol.topics import valid_device_id

MAX_STATE_BYTES = 1024
CONFIG_STATUSES = ("none", "applied", "rejected")
RESET_CAUSES = ("none", "power", "watchdog", "memory", "crash", "requested")
# The causes that say the firmware failed. A power cut (its owner pulled the plug) or the
# device's own planned reset says nothing about the version it runs.
FAULT_RESETS = ("watchdog", "memory", "crash")
STATE_CAUSES = ("connect", "heartbeat", "config", "consent", "update")
MAX_HEAP_BYTES = 1 << 30  # no device of ours has a GiB of heap: a larger figure is a lie
MAX_UPTIME_S = 10 * 366 * 86400  # ten years without a restart


_INT_FIELDS = ("t", "config_version", "heap_free", "buffered", "dropped", "seq", "floor",
               "resets", "link_failures", "uptime_s", "heap_low", "buffer_bytes", "reconnects",
               "hint_ms", "rssi", "update_progress")
# Bounds per int field (protocol.bounds): (lowest, highest); (0, MAX_COUNTER) if not listed.
_RANGE = {"t": (0, MAX_TIME_MS), "seq": (0, MAX_SEQ), "floor": (0, MAX_SEQ),
          "heap_free": (0, MAX_HEAP_BYTES), "heap_low": (0, MAX_HEAP_BYTES),
          "uptime_s": (0, MAX_UPTIME_S), "hint_ms": (0, MAX_HINT_MS), "rssi": (-150, 0),
          "update_progress": (0, 100)}
_STR_FIELDS = ("impl", "fw", "profile", "config_status", "reason", "reset_cause",
               "link_error", "why", "consent", "update", "update_id", "update_version",
               "update_reason")
# Fields that take one of a few words (absent: the first word).
_WORDS = {"config_status": CONFIG_STATUSES, "reset_cause": RESET_CAUSES,
          "why": STATE_CAUSES, "consent": consent_tiers.TIERS, "update": ota.DEVICE_STATUSES}


def _is_utf8(text):
    # A JSON escape can carry a lone surrogate ("\ud800") that no UTF-8 file, database or
    # HTTP body can hold: a gateway that accepted one could never seal its batch.
    try:
        text.encode()
    except UnicodeError:
        return False
    return True


def encode(fields, mac=None):
    """Bytes of a state; a v2 state (`mac`: the device's protocol.tag.Hmac) gets its tag."""
    signed = dict(fields)
    signed.pop("h", None)
    if signed.get("v") == 2:
        if mac is None:
            raise ValueError("a version 2 state needs the device's key")
        data = tag_codec.append(mac, json.dumps(signed, separators=(",", ":")).encode())
        check(json.loads(data))
        return data
    check(signed)
    return json.dumps(signed, separators=(",", ":")).encode()


def check(obj):
    if not isinstance(obj, dict):
        raise ValueError("state must be an object")
    version = obj.get("v")
    if type(version) is not int or version not in (1, 2):
        raise ValueError("state version unsupported")
    if not valid_device_id(obj.get("d")):
        raise ValueError("invalid device id")
    if version == 2:
        inc = obj.get("i")
        if type(inc) is not int or inc < 1 or inc > 2147483647:
            raise ValueError("state incarnation must be an int in 1..2**31-1")
        h = obj.get("h")
        if not isinstance(h, str) or len(h) != tag_codec.TAG_HEX:
            raise ValueError("tag must be 32 lowercase hex characters")
    for key in obj:
        if key in ("v", "d") or (version == 2 and key in ("i", "h")):
            continue
        value = obj[key]
        if key in _INT_FIELDS:
            low, high = _RANGE.get(key, (0, MAX_COUNTER))
            if type(value) is not int or value < low or value > high:
                raise ValueError("state field " + key + " must be an int in " + str(low)
                                 + ".." + str(high))
        elif key in _STR_FIELDS:
            if not isinstance(value, str) or len(value) > 200 or not _is_utf8(value):
                raise ValueError("state field " + key + " must be a short UTF-8 string")
        else:
            raise ValueError("unknown state field " + key)
    for key in _WORDS:
        if key in obj and obj[key] not in _WORDS[key]:
            raise ValueError("bad " + key)


def decode(payload):
    if len(payload) > MAX_STATE_BYTES:
        raise ValueError("state too large")
    try:
        obj = json.loads(payload)
    except Exception:
        raise ValueError("state is not JSON")
    check(obj)
    if obj["v"] == 2:
        tag_codec.split(payload)  # the tag must be the last member, well formed
    return obj
