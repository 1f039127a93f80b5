"""Signed config: the cloud's desired settings for one device, verified on the device.

Envelope (published retained, QoS 1, on fleet/<id>/config):
    {"v":1,"body":"{\"device\":\"bike-1\",\"issued\":1732345678123,\"settings\":{\"interval_ms\":500},\"version\":3}",
     "sig":"<base64 Ed25519 signature of the UTF-8 body text>"}
The body travels as text so the device verifies exactly the bytes that were signed.
Body fields: device (id), version (int >= 1, strictly increasing per device), issued (ms since
epoch), settings (name -> int, every name in SETTINGS, within its range), and optionally
consent (a tier of protocol.consent): the customer's account narrowing the device's consent to
that tier. It is carried only by the version the narrowing created; the device refuses the
whole envelope, with a reason, if that tier is wider than its own (only the customer, on the
product, widens consent).
The device applies a body only if the signature verifies under the cloud's config key, the
device id is its own, and version is greater than the version it has applied.
"""

import binascii
import json

from protocol import consent as consent_tiers
from protocol import ed25519
from protocol.bounds import MAX_CONFIG_VERSION, MAX_DOWNLINK_BYTES, MAX_TIME_MS
from protocol.topics import valid_device_id

# The one downlink limit: the cloud refuses to sign a larger envelope (422), the gateway refuses
# to publish one, and the device reports "too large (N > M)" for anything bigger it receives.
MAX_ENVELOPE_BYTES = MAX_DOWNLINK_BYTES

# name -> (minimum, maximum), all integers. The device refuses anything outside these.
SETTINGS = {
    "interval_ms": (100, 3600000),
    "ack_timeout_ms": (500, 600000),
    "max_inflight": (1, 64),
    "keepalive_s": (10, 3600),
    "heartbeat_s": (5, 86400),
    # What the product does for its owner (a product ignores those it has no use for): the
    # bike's coach mode (0 off, 1 on), the power its programme aims at (0: the rider's own
    # choice) and the programme's intensity (0 free ride, 1 easy, 2 moderate, 3 hard).
    "coach_mode": (0, 1),
    "target_power_w": (0, 2000),
    "programme": (0, 3),
}


def check_settings(settings):
    if not isinstance(settings, dict):
        raise ValueError("settings must be an object")
    for name in settings:
        if name not in SETTINGS:
            raise ValueError("unknown setting " + str(name))
        value = settings[name]
        low, high = SETTINGS[name]
        if type(value) is not int or value < low or value > high:
            raise ValueError(
                "setting " + name + " must be an int in " + str(low) + ".." + str(high)
            )


def check_body(body):
    if not isinstance(body, dict):
        raise ValueError("config body must be an object")
    for key in body:
        if key not in ("device", "version", "issued", "settings", "consent"):
            raise ValueError("unknown config field " + str(key))
    if "consent" in body and body["consent"] not in consent_tiers.TIERS:
        raise ValueError("unknown consent tier")
    if not valid_device_id(body.get("device")):
        raise ValueError("invalid device id")
    version = body.get("version")
    if type(version) is not int or version < 1 or version > MAX_CONFIG_VERSION:
        raise ValueError("config version must be an int in 1.." + str(MAX_CONFIG_VERSION))
    issued = body.get("issued")
    if type(issued) is not int or issued < 0 or issued > MAX_TIME_MS:
        raise ValueError("config issued must be an int in 0..2**53-1")
    check_settings(body.get("settings"))


def body_text(body):
    """Deterministic text of a body (CPython side: the cloud signs this)."""
    check_body(body)
    # CPython only: MicroPython's json.dumps has no sort_keys (the device never signs).
    return json.dumps(body, separators=(",", ":"), sort_keys=True)  # type: ignore[call-overload]


def seal(body, sign):
    """Envelope bytes for `body`; `sign(bytes) -> 64-byte signature` holds the private key."""
    text = body_text(body)
    sig = sign(text.encode())
    if len(sig) != 64:
        raise ValueError("signature must be 64 bytes")
    envelope = {"v": 1, "body": text, "sig": binascii.b2a_base64(sig).decode().strip()}
    data = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()  # type: ignore[call-overload]
    if len(data) > MAX_ENVELOPE_BYTES:
        raise ValueError("too large (" + str(len(data)) + " > " + str(MAX_ENVELOPE_BYTES) + ")")
    return data


def open_envelope(payload, public_key):
    """Verify an envelope and return its body dict; ValueError says what is wrong."""
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise ValueError("too large (" + str(len(payload)) + " > " + str(MAX_ENVELOPE_BYTES) + ")")
    try:
        env = json.loads(payload)
    except Exception:
        raise ValueError("config is not JSON")
    if not isinstance(env, dict) or env.get("v") != 1:
        raise ValueError("config envelope version unsupported")
    text = env.get("body")
    sig_b64 = env.get("sig")
    if not isinstance(text, str) or not isinstance(sig_b64, str):
        raise ValueError("config envelope needs body and sig")
    try:
        sig = binascii.a2b_base64(sig_b64)
    except Exception:
        raise ValueError("config signature is not base64")
    if not ed25519.verify(public_key, text.encode(), sig):
        raise ValueError("bad signature")
    try:
        body = json.loads(text)
    except Exception:
        raise ValueError("config body is not JSON")
    check_body(body)
    return body
