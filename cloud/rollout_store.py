"""The rows of updates (bundles, rollouts, their waves and devices) and the store methods that
keep them: part of cloud.store.Store, implemented once in SQL by cloud.rollout_db (which
SqliteStore, and so PostgreSQL's PgStore, inherits). Rules:
- a bundle is written once and never changed (its key names its product and version);
- a rollout's devices and waves are written when it is created; afterwards only their
  progress columns change, inside the caller's transaction (cloud.services.progress);
- the offers stamp moves with every change that may change a gateway's offers: planning a
  rollout, starting a wave and saving a rollout's state move it by themselves; a device word
  that enters or leaves the offered set, and a device of a rollout assigned to a gateway, move
  it through `touch_offers` (cloud.services.progress knows the old word and the assignment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class BundleRow:
    """A verified release bundle, without its bytes (`Store.bundle_data` reads those)."""

    key: str  # "bike-0.2.0", or "bike-0.2.0-from-0.1.0" for a delta
    offer_id: str  # protocol.ota.bundle_id of the whole manifest
    kind: str  # "full" | "delta"
    base: str | None  # a delta's base version
    product: str
    version: str
    min_version: str
    files: int  # files in the (whole) manifest
    carried: int  # files the bundle carries
    size: int  # bytes of the bundle file
    sha256: str  # of the bundle file
    created_ms: int
    created_by: str
    manifest_size: int = 0  # bytes of file 0 (signature + manifest text or patch)


@dataclass(frozen=True)
class RolloutRow:
    n: int  # the rollout's id is f"r-{n}"
    bundle: str
    product: str
    version: str
    offer_id: str
    target: dict[str, Any]  # {"cohort": name} or {"devices": [...]}
    waves: list[float]  # the percentages asked for
    soak_s: int
    failure_threshold: float
    deadline_s: int
    heap_ratio: float
    state: str  # cloud.services.rollouts.STATES
    reason: str  # why it is auto-paused (or was paused, resumed, aborted)
    accepted: dict[str, int]  # wave -> failures ops accepted when resuming it
    skipped: list[list[str]]  # [device, reason] of the devices left out
    created_ms: int
    created_by: str
    updated_ms: int

    @property
    def id(self) -> str:
        return f"r-{self.n}"


@dataclass(frozen=True)
class WaveRow:
    rollout: int
    wave: int  # 1-based
    percent: float
    size: int  # devices in this wave
    started_ms: int | None = None


@dataclass(frozen=True)
class RolloutDeviceRow:
    """One device of a rollout: its update word and what judging its soak needs (cloud
    clock `*_ms`, device clock `*_t`)."""

    rollout: int
    device: str
    wave: int
    position: int  # its place in the rollout's seeded order
    word: str  # protocol.ota.STATUSES
    since_ms: int  # when the word last changed
    progress: int | None = None
    reason: str = ""
    version: str | None = None  # the firmware its latest state reported
    word_t: int | None = None  # device time of the state that gave the word
    heard_ms: int | None = None  # its latest state
    offered_ms: int | None = None
    baseline_heap: int | None = None  # heap_low of its last state before the offer
    committed_ms: int | None = None
    committed_t: int | None = None
    commit_resets: int | None = None  # its resets count when it committed
    heap_min: int | None = None  # lowest heap_low on the new version since it committed
    beat_ms: int | None = None  # its latest state on the new version since it committed
    reset_cause: str | None = None  # set when it reset after committing


class RolloutStore(Protocol):
    # bundles
    def insert_bundle(self, row: BundleRow, manifest: bytes, data: bytes) -> None: ...
    def get_bundle(self, key: str) -> BundleRow | None: ...
    def list_bundles(self) -> list[BundleRow]:
        """Every bundle, newest first."""
        ...

    def bundle_data(self, key: str) -> bytes | None:
        """The bundle file's bytes."""
        ...

    def bundle_manifest(self, key: str) -> bytes | None:
        """File 0: the signature and the manifest text (a delta's: its patch)."""
        ...

    # rollouts
    def insert_rollout(self, row: RolloutRow) -> int:
        """Store a rollout (row.n ignored); returns its n."""
        ...

    def get_rollout(self, n: int) -> RolloutRow | None: ...
    def list_rollouts(self) -> list[RolloutRow]:
        """Every rollout, newest first."""
        ...

    def open_rollouts(self) -> list[RolloutRow]:
        """The rollouts with something left to judge: running or paused, or completed with a
        device between downloading and committed."""
        ...

    def save_rollout_state(self, row: RolloutRow) -> None:
        """Write the rollout's state, reason, accepted failures and updated_ms."""
        ...

    def insert_waves(self, rows: Sequence[WaveRow]) -> None: ...
    def waves(self, n: int) -> list[WaveRow]:
        """The rollout's waves, first first."""
        ...

    def start_wave(self, n: int, wave: int, now_ms: int) -> None: ...
    def insert_rollout_devices(self, rows: Sequence[RolloutDeviceRow]) -> None: ...
    def rollout_devices(self, n: int) -> list[RolloutDeviceRow]:
        """The rollout's devices in their seeded order."""
        ...

    def save_rollout_devices(self, rows: Sequence[RolloutDeviceRow]) -> None:
        """Write the progress columns of these rows."""
        ...

    def held_devices(self, device_ids: Sequence[str]) -> list[RolloutDeviceRow]:
        """The rows of these devices in rollouts that are not aborted, whose word is not
        final (a device is in at most one such rollout)."""
        ...

    def gateway_rollout_devices(self, gateway_id: str) -> list[tuple[RolloutDeviceRow, str]]:
        """(row, its rollout's state) of the devices assigned to the gateway, in a started
        wave of a rollout that is not aborted, with a word from pending to rebooting."""
        ...

    def has_records_after(self, device_id: str, t: int) -> bool:
        """Whether any record of the device with device time > t is stored."""
        ...

    # the offers stamp
    def touch_offers(self) -> None:
        """Move the offers stamp (inside the transaction of the change)."""
        ...

    def offers_stamp(self) -> int:
        """A counter that moved since an earlier read when some gateway's offers may have
        changed (one row read)."""
        ...
