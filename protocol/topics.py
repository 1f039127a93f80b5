"""MQTT topic names. A device id is also its certificate CN and its MQTT username.

Uplink (device publishes):   fleet/<id>/telemetry  fleet/<id>/state  fleet/<id>/status
                             fleet/<id>/fetch (update bytes it asks for: protocol.ota)
                             fleet/<id>/pong (the answer to a ping)
Downlink (device subscribes): fleet/<id>/ack  fleet/<id>/config
                             fleet/<id>/update (the offer)  fleet/<id>/chunk (update bytes)
                             fleet/<id>/ping (a technician's round trip)

Ping: the payload is a token of 1 to MAX_PING_BYTES printable ASCII bytes; the device publishes
the same bytes on its pong topic (QoS 0) and nothing else, so a round trip measures the link and
the device's loop, not any work. A payload outside those bounds gets no answer.
"""

PREFIX = "fleet"
TELEMETRY = "telemetry"
STATE = "state"
STATUS = "status"
ACK = "ack"
CONFIG = "config"
FETCH = "fetch"
UPDATE = "update"
CHUNK = "chunk"
PING = "ping"
PONG = "pong"
MAX_PING_BYTES = 32

UPLINK = (TELEMETRY, STATE, STATUS, FETCH, PONG)
DOWNLINK = (ACK, CONFIG, UPDATE, CHUNK, PING)

MAX_ID_LEN = 64
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def valid_device_id(value):
    """True for 1-64 chars of [A-Za-z0-9_-] that do not start with '-' or '_'.

    The same rule guards topics, certificate CNs and file names, so an id can never
    smuggle a wildcard, a slash or a path component.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        return False
    if value[0] in "-_":
        return False
    return not value.strip(_ID_CHARS)  # nothing left: every character allowed (checked in C)


def topic(device_id, kind):
    if not valid_device_id(device_id):
        raise ValueError("invalid device id")
    if kind not in UPLINK and kind not in DOWNLINK:
        raise ValueError("unknown topic kind")
    return PREFIX + "/" + device_id + "/" + kind


def parse(name):
    """Split 'fleet/<id>/<kind>' into (id, kind); ValueError for anything else."""
    if isinstance(name, (bytes, bytearray, memoryview)):
        name = bytes(name).decode()
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise ValueError("not a fleet topic")
    if not valid_device_id(parts[1]):
        raise ValueError("invalid device id in topic")
    if parts[2] not in UPLINK and parts[2] not in DOWNLINK:
        raise ValueError("unknown topic kind")
    return parts[1], parts[2]


def subscription(kind):
    """Wildcard filter the gateway uses to receive one uplink kind from every device."""
    return PREFIX + "/+/" + kind
