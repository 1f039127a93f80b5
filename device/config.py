"""Signed config from the cloud, in two steps, because Ed25519 verification (protocol.config
pulls in ed25519 + sha512) needs ~35 KB of heap that a 64 KB device lacks while the agent runs:

1. precheck() when an envelope arrives: a cheap look at the *unverified* body. Already decided
   (same bytes) or same version -> ignored quietly (the retained config comes back on every
   subscribe); older version or another device -> rejected at once; anything else is staged
   to data/config.pending and the agent stops.
2. process_pending() at (soft) boot, before the agent is imported (main.py): verify the
   signature, check device and version again on the verified body, apply and persist.

A body carrying `consent` (protocol.config) is the customer's account narrowing the device's
consent: a tier wider than the device's own refuses the whole envelope (only the customer
widens, on the product); a narrower one is written to data/consent.json (origin "cloud",
cfg = this version, not logged yet: device/consent.py logs its record at the next start)
before the version is recorded; the same tier changes nothing.

This module is imported only for those moments and unloaded afterwards (port.unload).
"""

import binascii
import hashlib
import json

from device import port

IGNORE = 0
REJECT = 1
STAGE = 2


def digest(payload):
    return binascii.hexlify(hashlib.sha256(payload).digest()[:12]).decode()


def too_large(conf, size, limit):
    """A downlink larger than any may be (mqtt.Client.on_oversize): rejected with the reason
    the operator sees in the state message; IGNORE when that is already the last decision."""
    reason = "too large (%d > %d)" % (size, limit)
    if conf.status == "rejected" and conf.reason == reason:
        return IGNORE, conf.version
    conf.decide("rejected", reason, conf.seen)
    return REJECT, conf.version


def precheck(conf, payload):
    """Returns (IGNORE|REJECT|STAGE, version or 0). A REJECT is already persisted."""
    seen = digest(payload)
    if seen == conf.seen or seen == conf.deferred:
        return IGNORE, conf.version
    try:
        body = json.loads(json.loads(payload)["body"])
        version = body["version"]
        device = body["device"]
    except (ValueError, KeyError, TypeError):
        version = device = None
    if type(version) is not int:
        conf.decide("rejected", "malformed config", seen)
        return REJECT, 0
    if device != conf.device_id:
        conf.decide("rejected", "config is for another device", seen)
        return REJECT, version
    if version == conf.version:
        return IGNORE, version
    if version < conf.version:
        conf.decide("rejected", "version %d is older than applied %d" % (
            version, conf.version), seen)
        return REJECT, version
    port.write_atomic(conf.pending_path, payload)
    conf.deferred = ""  # a newer envelope replaces one that waited for memory
    return STAGE, version


def _consent(data_dir, tier, version):
    """The body's consent `tier` against the device's own: ValueError if it is wider (only
    the customer widens, on the product); the tier if narrower; None if the same.

    A refusal restates the device's own tier in a consent record with cfg = this version: the
    cloud, which carries its narrowing in every config until a consent record with a cfg that
    high confirms it, learns that the device saw it and is narrower still, instead of having
    every later config refused."""
    from device import consent
    from protocol import consent as tiers

    current = consent.tier_of(data_dir)
    wider = tiers.rank(tier) - tiers.rank(current)
    if wider > 0:
        consent.change(data_dir, current, "device", version)
        raise ValueError("consent can only be widened on the product (%s is wider than %s)" % (
            tier, current))
    return tier if wider < 0 else None


def process_pending(conf, config_pub):
    """Verify and apply the staged envelope; returns an event dict, or None if none staged.

    If the heap is too fragmented to verify (MemoryError, seen at 64 KB on the unix port when
    a config arrives mid-run), the envelope stays staged and conf.deferred remembers it, so
    the agent neither re-stages it nor stops for it again; main() verifies staged envelopes
    first thing at every start, on a fresh heap."""
    try:
        payload = port.read_bytes(conf.pending_path)
    except OSError:
        return None
    seen = digest(payload)
    body = None
    narrow = None  # a narrower consent tier the body carries
    data_dir = conf.path.rsplit("/", 1)[0]
    try:
        from protocol import config

        body = config.open_envelope(payload, config_pub)
        if body["device"] != conf.device_id:
            raise ValueError("config is for another device")
        if body["version"] <= conf.version:
            raise ValueError("version %d is not newer than applied %d" % (
                body["version"], conf.version))
        if "consent" in body:
            narrow = _consent(data_dir, body["consent"], body["version"])
    except ValueError as e:
        body = None
        conf.decide("rejected", str(e), seen)
    except MemoryError:
        conf.deferred = seen
    config = None  # type: ignore[assignment]  # drop the module so unload() can free it
    port.unload("protocol.config", "protocol.ed25519", "protocol.sha512", "protocol.topics",
                "protocol.consent", "protocol.bounds", "protocol.tag", "protocol.record",
                "protocol.hint", "protocol.state", "protocol", "device.consent")
    if conf.deferred == seen:
        return {"event": "config", "status": "deferred", "version": conf.version,
                "reason": "not enough memory to verify now; verified at next start"}
    if body is not None:
        if narrow is not None:
            # Before the version is recorded: a power cut in between verifies the envelope
            # again at the next start and finds the tier already narrowed, never the reverse.
            from device import consent

            consent.change(data_dir, narrow, "cloud", body["version"])
            consent = None  # type: ignore[assignment]
            port.unload("device.consent")
        conf.decide("applied", "", seen, body["version"], body["settings"])
    port.remove(conf.pending_path)
    return {"event": "config", "status": conf.status, "version": conf.version,
            "reason": conf.reason}
