"""The rows of policies as experiments (cloud.services.policies) and the store methods that
keep them: part of cloud.store.Store, implemented once in SQL by cloud.policy_db (which
SqliteStore, and so PostgreSQL's PgStore, inherits). Rules:
- a policy's request (`spec`), its seed and its arms are written once, when it is created;
  afterwards only its state, window, extensions and reason change, inside the caller's
  transaction;
- an evaluation is written once per window judged, numbered from 1: (policy, n) is unique,
  so a second process judging the same window cannot store it twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PolicyRow:
    id: int  # assigned by the store
    name: str
    product: str
    spec: dict[str, Any]  # the request's fields as checked (condition, change, outcome, ...)
    seed: int
    state: str  # running | kept | reverted | stopped
    reason: str  # why it is in its state (the last decision's words)
    created_ms: int  # cloud clock
    created_by: str
    window_start_ms: int  # record time
    window_end_ms: int
    extensions: int
    updated_ms: int


@dataclass(frozen=True)
class PolicyDeviceRow:
    policy: int
    device: str
    arm: str  # treatment | control | excluded
    reason: str = ""  # why an excluded device does not take part


@dataclass(frozen=True)
class EvaluationRow:
    policy: int
    n: int  # 1 for the first window judged
    at_ms: int  # cloud clock of the decision
    evidence: dict[str, Any]  # window, arms' sizes and means, lift, interval, decision


@dataclass(frozen=True)
class PolicyLayer:
    """One device's share of a policy whose change is in force: a running policy's treatment
    devices, a kept policy's treatment and control devices."""

    policy: int
    device: str
    change: dict[str, Any]


class PolicyStore(Protocol):
    def insert_policy(self, row: PolicyRow) -> int:
        """Store a policy (row.id ignored); returns its id."""
        ...

    def get_policy(self, policy_id: int) -> PolicyRow | None: ...
    def policy_by_name(self, name: str) -> PolicyRow | None: ...
    def list_policies(self) -> list[PolicyRow]:
        """Every policy, newest first."""
        ...

    def running_policies(self) -> list[PolicyRow]:
        """The policies in state running, oldest first."""
        ...

    def save_policy_state(self, row: PolicyRow) -> None:
        """Write the policy's state, reason, window, extensions and updated_ms."""
        ...

    def insert_policy_devices(self, rows: Sequence[PolicyDeviceRow]) -> None: ...
    def policy_devices(self, policy_id: int) -> list[PolicyDeviceRow]:
        """The policy's devices (every arm), by device id."""
        ...

    def policy_record_clock(self, policy_id: int) -> int | None:
        """The newest record time (devices.last_seen_ms) among the policy's treatment and
        control devices; None when none of them has sent anything."""
        ...

    def policy_heard(self, policy_id: int, since_ms: int) -> dict[str, tuple[int, int]]:
        """Per arm (treatment, control): (its devices, those the cloud has heard from past
        since_ms with their records in: DeviceRow.heard_past)."""
        ...

    def running_policy_of(self, device_ids: Sequence[str]) -> dict[str, int]:
        """device -> the running policy it takes part in (treatment or control), for those
        of `device_ids` that are in one."""
        ...

    def policy_layers(self, device_ids: Sequence[str] | None = None) -> list[PolicyLayer]:
        """The changes in force (see PolicyLayer) for these devices (None: every device),
        oldest policy first."""
        ...

    def insert_evaluation(self, row: EvaluationRow) -> None: ...
    def evaluations(self, policy_id: int) -> list[EvaluationRow]:
        """The policy's evaluations, first first."""
        ...
