"""The rows of the gateways' aggregate records (protocol.aggregate) and the store methods that
keep them: part of cloud.store.Store, implemented once in SQL by cloud.aggregate_db (which
SqliteStore, and so PostgreSQL's PgStore, inherits). Rules:
- an aggregate's identity is (device, incarnation, start_ms, first_seq): the same one again
  is a duplicate and changes nothing;
- consent deletions rewrite an aggregate's metrics in place (`set_aggregate_metrics`), inside
  the caller's transaction, like telemetry's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class AggregateRow:
    device: str
    incarnation: int
    start_ms: int  # device clock, a multiple of window_s * 1000
    first_seq: int
    last_seq: int
    window_s: int
    n: int  # records the gateway folded into it
    product: str
    raw: str  # "sent": the raw records came too; "local": they stayed at the gateway
    m: dict[str, dict[str, Any]]  # metric -> {n, min, max, mean, last}
    gateway: str
    batch_seq: int
    received_ms: int


@dataclass(frozen=True)
class RawKept:
    """What a device's gateways summarised and kept to themselves (raw = local)."""

    records: int  # raw records summarised by aggregates whose raw records stayed local
    windows: int
    gateways: tuple[str, ...]


@dataclass(frozen=True)
class ModeRow:
    """What cloud ops chose for a product's records at the gateways."""

    product: str
    mode: str  # protocol.aggregate.parse_mode: raw, N or N:local
    updated_ms: int
    updated_by: str


class AggregateStore(Protocol):
    def aggregation_modes(self) -> list[ModeRow]: ...

    def set_aggregation_mode(self, row: ModeRow) -> None: ...

    def insert_aggregates(self, rows: Sequence[AggregateRow]) -> int:
        """Insert new identities; returns how many were new (the rest are duplicates)."""
        ...

    def aggregates(self, device_id: str, from_ms: int, to_ms: int,
                   limit: int) -> list[AggregateRow]:
        """The device's aggregates with start in [from_ms, to_ms), oldest first."""
        ...

    def raw_kept(self, device_id: str) -> RawKept: ...

    def aggregate_metric_rows(self, device_id: str) -> list[AggregateRow]: ...

    def set_aggregate_metrics(
        self, device_id: str, updates: Sequence[tuple[int, int, int, dict[str, Any]]]
    ) -> None:
        """(incarnation, start_ms, first_seq, metrics) for each aggregate to rewrite."""
        ...
