"""The fleet at a glance, from the device rows and the drift states (cloud.services.drift:
the one definition of online and of drift): online or offline, firmware versions, config
drift, consent tiers. Pure functions; no telemetry is read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloud.services import consent as consent_service
from cloud.services.drift import Drift
from cloud.store import DeviceRow


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


def tally(devices: Sequence[DeviceRow], states: Mapping[str, Drift]) -> Tally:
    up = sum(1 for d in devices if states[d.id].online)
    fw = Counter(firmware(d) for d in devices)
    tiers = Counter(consent_service.effective(d) or "not reported" for d in devices)
    drifts = Counter(states[d.id].status for d in devices)
    return Tally(
        online=up, offline=len(devices) - up,
        firmware=sorted(fw.items(), key=lambda kv: (-kv[1], kv[0])),
        consent=sorted(tiers.items()),
        drift=sorted(drifts.items()),
    )
