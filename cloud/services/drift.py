"""Online and drift: the one definition of each, used by the API (GET /api/v1/drift), the
fleet overview, the device, customer and cohort pages.

Online. A device was last heard from at the newest timestamp of the records and states the
cloud stored of it (`last_seen_ms`, the device's own clock: when it was alive, not when a
gateway's backlog reached the cloud). It is online when that is within OFFLINE_INTERVALS of
its heartbeat interval (its desired `heartbeat_s`, else the device default) of now, offline
otherwise or when never heard from. A device whose clock runs ahead counts as online; one
whose clock is far behind counts as offline (its page shows the time it sends).

Drift. How a device's reported config relates to its desired one (the resolved profiles,
cloud.services.profiles, signed per device by cloud.services.config); the first that holds:
- "decommissioned" / "revoked": out of service, it gets no configs (not drift);
- "not set": nothing desired for it;
- "in sync": its latest state reports the desired version applied;
- "rejected": its latest state says it rejected a config (`reason` is the device's own);
- "offline": it is not online (above), so it cannot have applied it yet;
- "not yet applied": online, and has not applied it yet.
The last three are drift: `drift()` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud.services import registry
from cloud.store import ConfigRow, DeviceRow, RegistryRow, Store

NOT_SET = "not set"
IN_SYNC = "in sync"
REJECTED = "rejected"
OFFLINE = "offline"
PENDING = "not yet applied"
DRIFTING = (REJECTED, OFFLINE, PENDING)
STATES = (NOT_SET, IN_SYNC, *DRIFTING, registry.DECOMMISSIONED, registry.REVOKED)
OFFLINE_INTERVALS = 3
DEFAULT_HEARTBEAT_S = 60  # device/settings.py


def heartbeat_ms(settings: dict[str, Any] | None) -> int:
    """The device's heartbeat interval: the desired `heartbeat_s`, else the default."""
    value = (settings or {}).get("heartbeat_s")
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return (value if ok else DEFAULT_HEARTBEAT_S) * 1000  # type: ignore[operator]


def is_online(heard: int | None, now_ms: int, beat_ms: int,
              intervals: int = OFFLINE_INTERVALS) -> bool:
    return heard is not None and now_ms - heard <= intervals * beat_ms


@dataclass(frozen=True)
class Liveness:
    """The online rule's answer for one device, and what it was made of."""

    heard_ms: int | None
    heartbeat_ms: int
    online: bool


def liveness(device: DeviceRow, desired: ConfigRow | None, now_ms: int,
             intervals: int = OFFLINE_INTERVALS) -> Liveness:
    """The one definition of online (the module doc)."""
    heard = device.last_seen_ms
    beat = heartbeat_ms(None if desired is None else desired.settings)
    return Liveness(heard, beat, is_online(heard, now_ms, beat, intervals))


@dataclass(frozen=True)
class Drift:
    device: str
    desired_version: int | None
    reported_version: int | None
    status: str  # one of STATES
    reason: str
    last_heard_ms: int | None  # the device's newest timestamp; None: never
    online: bool

    @property
    def drifting(self) -> bool:
        return self.status in DRIFTING


def state_of(device: DeviceRow, reg: RegistryRow | None, desired: ConfigRow | None,
             live: Liveness, now_ms: int) -> Drift:
    """The device's drift state (the module doc's rules, in order)."""
    state = device.reported or {}
    reported = state.get("config_version")
    reported = reported if isinstance(reported, int) and not isinstance(reported, bool) else None
    version = None if desired is None else desired.version

    def out(status: str, reason: str) -> Drift:
        return Drift(device.id, version, reported, status, reason, live.heard_ms, live.online)

    if reg is not None and reg.status != registry.ACTIVE:
        return out(reg.status, reg.status_reason or "")
    if version is None:
        return out(NOT_SET, "no desired config")
    status_word = state.get("config_status")
    if reported == version and status_word == "applied":
        return out(IN_SYNC, f"version {version} applied")
    if status_word == REJECTED:
        return out(REJECTED, str(state.get("reason") or "no reason given"))
    if not live.online:
        if live.heard_ms is None:
            return out(OFFLINE, "never heard from")
        return out(OFFLINE, f"not heard from for {max(0, now_ms - live.heard_ms) // 1000} s")
    have = "none" if reported is None else str(reported)
    return out(PENDING, f"reports version {have}, desired {version}")


def fleet_states(store: Store, now_ms: int, devices: list[DeviceRow] | None = None,
                 intervals: int = OFFLINE_INTERVALS) -> dict[str, Drift]:
    """Every device's (or the given devices') drift state, by id: three reads in bulk
    (devices, registry, latest configs), none of the telemetry table."""
    rows = store.list_devices() if devices is None else devices
    regs = {r.device: r for r in store.registries()}
    configs = store.latest_configs()
    out: dict[str, Drift] = {}
    for device in rows:
        desired = configs.get(device.id)
        live = liveness(device, desired, now_ms, intervals)
        out[device.id] = state_of(device, regs.get(device.id), desired, live, now_ms)
    return out


def device_state(store: Store, device: DeviceRow, now_ms: int) -> Drift:
    """One device's drift state (its page), from its own rows."""
    desired = store.latest_config(device.id)
    live = liveness(device, desired, now_ms)
    return state_of(device, store.registry(device.id), desired, live, now_ms)


def drift(store: Store, now_ms: int, intervals: int = OFFLINE_INTERVALS) -> list[Drift]:
    """Every drifting device (rejected, offline, not yet applied), by id."""
    states = fleet_states(store, now_ms, intervals=intervals)
    return [states[k] for k in sorted(states) if states[k].drifting]
