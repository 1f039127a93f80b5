"""The fleet at a glance, from the device rows alone (no telemetry is read): online or
offline, firmware versions, config drift, consent tiers and the alerts an operator acts on.
Pure functions over what cloud.services.telemetry.overview read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from cloud.services import consent as consent_service
from cloud.store import DeviceRow

# A device states its vitals every heartbeat_s (device/settings.py: 60 s unless a config
# sets it); the gateway forwards in batches. Two missed heartbeats plus a batch's delay and
# the device counts as offline.
DEFAULT_HEARTBEAT_S = 60
GRACE_MS = 30_000


def heartbeat_ms(settings: dict[str, object] | None) -> int:
    value = (settings or {}).get("heartbeat_s")
    seconds = value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_HEARTBEAT_S
    return seconds * 1000


def online(device: DeviceRow, now_ms: int, heartbeat: int = DEFAULT_HEARTBEAT_S * 1000) -> bool:
    """Heard from within two heartbeats (and a batch's delay). last_seen_ms is the device's
    own clock: a device whose clock runs ahead still counts as online."""
    if device.last_seen_ms is None:
        return False
    return now_ms - device.last_seen_ms <= 2 * heartbeat + GRACE_MS


@dataclass(frozen=True)
class Drift:
    """How the device's reported config relates to its desired one."""

    state: str  # "not set" (nothing desired), "in sync", "rejected", "pending", "offline"
    text: str


def drift(device: DeviceRow, desired: int | None, is_online: bool) -> Drift:
    state = device.reported or {}
    reported = state.get("config_version")
    status = state.get("config_status")
    if desired is None:
        return Drift("not set", "no desired config")
    if reported == desired and status == "applied":
        return Drift("in sync", f"v{desired} applied")
    if reported == desired and status == "rejected":
        reason = str(state.get("reason") or "no reason given")
        return Drift("rejected", f"v{desired} rejected: {reason}")
    have = f"reports v{reported}" if isinstance(reported, int) else "reports none"
    if not is_online:
        return Drift("offline", f"v{desired} desired, {have}; offline")
    return Drift("pending", f"v{desired} desired, {have}; not yet applied")


def firmware(device: DeviceRow) -> str:
    state = device.reported or {}
    fw = state.get("fw")
    return str(fw) if fw is not None else "unknown"


@dataclass(frozen=True)
class Tally:
    online: int
    offline: int
    firmware: list[tuple[str, int]]  # version -> devices, most common first
    consent: list[tuple[str, int]]  # tier -> devices
    drift: list[tuple[str, int]]  # drift state -> devices


def tally(devices: list[DeviceRow], desired: dict[str, int], now_ms: int) -> Tally:
    up = [online(d, now_ms) for d in devices]
    fw = Counter(firmware(d) for d in devices)
    tiers = Counter(consent_service.effective(d) or "not reported" for d in devices)
    drifts = Counter(drift(d, desired.get(d.id), u).state for d, u in zip(devices, up, strict=True))
    return Tally(
        online=sum(up), offline=len(devices) - sum(up),
        firmware=sorted(fw.items(), key=lambda kv: (-kv[1], kv[0])),
        consent=sorted(tiers.items()),
        drift=sorted(drifts.items()),
    )
