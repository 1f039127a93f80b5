"""Drift: devices whose reported config is not their desired one, and why.

For every device with a desired config (cloud.services.config) whose latest state does not
report that version as applied, one reason, the first that holds:
- "rejected": its latest state says it rejected a config (`reason` is the device's own);
- "offline": the cloud has not heard from it (no state received) for OFFLINE_INTERVALS of
  its heartbeat interval (the desired `heartbeat_s`, else the device default), or never;
- "not yet applied": it is online and has not applied it yet.
Devices that are decommissioned or revoked are left out: they get no configs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.services import registry
from cloud.store import Store

REJECTED = "rejected"
OFFLINE = "offline"
PENDING = "not yet applied"
OFFLINE_INTERVALS = 3
DEFAULT_HEARTBEAT_S = 60  # device/settings.py


@dataclass(frozen=True)
class Drift:
    device: str
    desired_version: int
    reported_version: int | None
    status: str  # REJECTED | OFFLINE | PENDING
    reason: str
    last_heard_ms: int | None  # cloud clock of its latest state, None: never


def drift(store: Store, now_ms: int, intervals: int = OFFLINE_INTERVALS) -> list[Drift]:
    """Every drifting device, by id."""
    desired = store.desired_versions()
    regs = {r.device: r for r in store.registries()}
    out: list[Drift] = []
    for device in store.list_devices():
        version = desired.get(device.id)
        reg = regs.get(device.id)
        if version is None or (reg is not None and reg.status != registry.ACTIVE):
            continue
        state = device.reported or {}
        reported = state.get("config_version")
        reported = reported if isinstance(reported, int) else None
        status_word = state.get("config_status", "none")
        if reported == version and status_word == "applied":
            continue
        beats = store.heartbeats(device.id, 1)
        heard = beats[0].received_ms if beats else None
        latest = store.latest_config(device.id)
        beat_s = DEFAULT_HEARTBEAT_S if latest is None else int(
            latest.settings.get("heartbeat_s", DEFAULT_HEARTBEAT_S))
        if status_word == REJECTED:
            status, reason = REJECTED, str(state.get("reason", ""))
        elif heard is None:
            status, reason = OFFLINE, "never heard from"
        elif now_ms - heard > intervals * beat_s * 1000:
            status, reason = OFFLINE, f"not heard from for {(now_ms - heard) // 1000} s"
        else:
            status, reason = PENDING, f"reports version {reported}, desired {version}"
        out.append(Drift(device.id, version, reported, status, reason, heard))
    return out
