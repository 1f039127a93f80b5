"""MQTT topic names. A device id is also its certificate CN and its MQTT username.

Uplink (device publishes):   fleet/<id>/telemetry  fleet/<id>/state  fleet/<id>/status
Downlink (device subscribes): fleet/<id>/ack  fleet/<id>/config
"""

PREFIX = "fleet"
TELEMETRY = "telemetry"
STATE = "state"
STATUS = "status"
ACK = "ack"
CONFIG = "config"

UPLINK = (TELEMETRY, STATE, STATUS)
DOWNLINK = (ACK, CONFIG)

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
    for ch in value:
        if ch not in _ID_CHARS:
            return False
    return True


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
