"""The storage interface the services use, and the rows it returns.

db.SqliteStore implements it with sqlite3; pg.PgStore runs the same methods on PostgreSQL.
Rules the services rely on:
- `transaction()` makes everything inside it one atomic unit and serialises writers, so a
  chain head or a config version read inside it cannot change before the commit (SQLite:
  BEGIN IMMEDIATE; PostgreSQL: one advisory lock, pg_advisory_xact_lock, taken first).
- Nothing outside a transaction writes.
- JSON-shaped values (metrics, settings, reported state) go in and come out as dicts.
- Config revisions become visible in increasing order (the gateways' feed pages by them).
  Both get this from their single writer (PostgreSQL: the advisory lock above), so no lower
  revision commits later.
- A device's `gateway` is the gateway it is assigned to: set by the first gateway that
  delivers data the cloud accepts as the device's, changed only by an operator.
- A record's identity is (device, incarnation, seq); version 1 records are incarnation 0.
- A device's record key is written by `set_record_key` and read by `record_key` only: no row
  type carries it, so no listing can show it.
- A consent record is a telemetry row with `consent` set (its `c` object) and empty metrics;
  metric rows have consent None. Consent deletions rewrite a device's metric rows in place
  (`set_metrics`), inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud.aggregate_store import AggregateStore
from cloud.policy_store import PolicyStore
from cloud.rollout_store import RolloutStore


@dataclass(frozen=True)
class GatewayRow:
    id: str
    public_key: bytes  # raw 32-byte Ed25519 public key
    created_ms: int
    last_seq: int  # seq of the last batch stored, 0 before the first
    last_digest: str  # digest of that batch, protocol.batch.GENESIS before the first
    last_batch_ms: int | None = None  # cloud clock when the last batch was stored


@dataclass(frozen=True)
class BatchRow:
    gateway: str
    seq: int
    digest: str
    prev: str
    created_ms: int
    received_ms: int
    records: int
    stored: int
    states: int
    quarantined: int = 0  # records and states of the batch kept in quarantine
    gap_status: int | None = None  # a gap (protocol.batch.Gap): the status the batch got
    gap_reason: str | None = None  # ... and the reason it was refused; None for real batches

    @property
    def is_gap(self) -> bool:
        return self.gap_status is not None


@dataclass(frozen=True)
class QuarantineRow:
    """One record or state of an accepted batch that could not be stored, and why."""

    gateway: str
    batch_seq: int
    kind: str  # "record" | "state"
    reason: str
    body: str  # the offending JSON, truncated
    received_ms: int
    device: str | None = None  # its device id when that id is valid
    seq: int | None = None  # its seq (`s`) when that is an int the store can hold
    id: int = 0  # assigned by the store, increasing


@dataclass(frozen=True)
class DeviceRow:
    id: str
    product: str | None
    created_ms: int
    gateway: str | None = None  # the assigned gateway: the first to deliver, or an operator's
    last_seen_ms: int | None = None  # newest device timestamp received (device clock)
    last_seq: int = 0  # of its current incarnation
    records: int = 0
    last_metrics: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] | None = None  # latest protocol.state object
    incarnation: int = 0  # the latest incarnation that delivered a record (0: version 1)
    conflicts: int = 0  # identities that arrived again with other content (quarantined)
    # Consent (cloud.services.consent): the tier of the device's newest consent record and
    # that record's place (None: it never sent one), and a narrowing requested in the cloud
    # with the config version that carried it (None: none in force).
    consent_tier: str | None = None
    consent_incarnation: int | None = None
    consent_seq: int | None = None
    consent_cap: str | None = None
    consent_cap_version: int | None = None

    def heard_past(self, since_ms: int) -> bool:
        """Whether the cloud holds what the device made up to a moment at or after since_ms:
        its newest record is dated there, or its newest state is and every record the device
        had made by then (the state's seq, in the same incarnation) is stored. A state alone
        is not enough: a device with a backlog reports its clock before its buffered records
        arrive (at the end of a loaded proof, 79 of 107 devices had, with 27 % of their
        window's records in)."""
        if self.last_seen_ms is None or self.last_seen_ms < since_ms:
            return False
        state = self.reported
        if state is None or self.last_seen_ms > state.get("t", 0):
            return True  # the newest time is a stored record's
        made = state.get("seq", 0)
        return made == 0 or (self.incarnation == state.get("i", 0) and self.last_seq >= made)


# (device, incarnation, seq, t, m, gateway, batch_seq, consent): a TelemetryRow's columns
TelemetryValues = tuple[str, int, int, int, dict[str, Any], str, int, dict[str, Any] | None]


@dataclass(frozen=True)
class TelemetryRow:
    device: str
    seq: int
    t: int
    m: dict[str, Any]
    gateway: str
    batch_seq: int
    incarnation: int = 0
    consent: dict[str, Any] | None = None  # a consent record's `c` (its m is then {})


@dataclass(frozen=True)
class ConsentAuditRow:
    """One change of a device's effective consent tier, or metrics removed under it."""

    device: str
    at_ms: int  # cloud clock
    origin: str  # "device" | "cloud" (protocol.consent.ORIGINS)
    requested_by: str  # e.g. "device consent record 1234567/4", "admin token", "late arrival"
    from_tier: str | None  # the effective tier before (None: unrestricted, never reported)
    to_tier: str
    fields: list[str]  # metric names removed, sorted
    rows: int  # stored rows changed
    id: int = 0  # assigned by the store, increasing


@dataclass(frozen=True)
class HeartbeatRow:
    """One verified state of a device (its vitals), without the tag."""

    device: str
    incarnation: int  # 0 for version 1 states
    t: int  # device clock
    received_ms: int  # cloud clock
    body: dict[str, Any]
    id: int = 0  # assigned by the store, increasing


@dataclass(frozen=True)
class ConfigRow:
    device: str
    version: int
    revision: int  # global, strictly increasing over all devices
    issued_ms: int
    settings: dict[str, Any]
    envelope: str  # protocol.config envelope text, exactly as signed


@dataclass(frozen=True)
class Bucket:
    """One bucket of a downsampled series: the numeric values whose time falls in
    [start_ms, start_ms + bucket_ms)."""

    start_ms: int
    count: int
    min: float
    max: float
    mean: float


@dataclass(frozen=True)
class TokenRow:
    """An API token as the cloud keeps it: never the token, only its SHA-256."""

    id: int
    name: str
    role: str  # cloud.access.Role
    customer: str | None  # for role customer: whose token it is
    created_ms: int
    created_by: str  # the principal that created it ("offline" for the CLI on the database)
    expires_ms: int
    revoked_ms: int | None = None
    last_used_ms: int | None = None  # updated at most once a minute


@dataclass(frozen=True)
class AuditRow:
    """One change the API made, or a write it refused to an authenticated caller."""

    at_ms: int
    actor: str  # the principal's name
    role: str
    token_id: int | None
    action: str  # e.g. token.create, config.put
    target: str  # e.g. device:bike-1
    before: str | None  # small JSON (cloud.services.audit bounds it), never a secret
    after: str | None
    outcome: str  # ok | refused
    reason: str
    id: int = 0  # assigned by the store, increasing


@dataclass(frozen=True)
class SessionRow:
    """A dashboard sign-in, by the SHA-256 of its cookie's session id."""

    id_hash: str
    token_id: int | None  # the token signed in with; None for the bootstrap admin
    role: str
    name: str
    created_ms: int
    expires_ms: int
    csrf: str  # the secret every form of the session carries


@dataclass(frozen=True)
class RegistryRow:
    """What the registry knows of a device besides its data (cloud.services.registry)."""

    device: str
    product: str | None = None
    customer: str | None = None
    hw_rev: str | None = None
    cert_fingerprint: str | None = None  # sha256 hex of the device certificate's DER
    cert_serial: str | None = None  # the certificate's serial number, hex
    enrolled_ms: int | None = None
    status: str = "active"  # active | decommissioned | revoked
    status_ms: int | None = None
    status_reason: str | None = None


@dataclass(frozen=True)
class CustomerRow:
    id: str
    name: str
    created_ms: int
    cancelled_ms: int | None = None


@dataclass(frozen=True)
class CohortRow:
    name: str
    kind: str  # "rule" | "list"
    spec: dict[str, Any]  # the rule, or {"devices": [...]}
    priority: int
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class ProfileRow:
    kind: str  # "product" | "cohort" | "device"
    scope: str  # the product, cohort name or device id
    version: int
    settings: dict[str, Any]
    created_ms: int
    created_by: str
    active: bool = True
    id: int = 0


@dataclass(frozen=True)
class CrlRow:
    der: bytes  # the device CA's signed CRL, DER
    number: int  # its CRL number
    created_ms: int
    uploaded_by: str
    id: int = 0


class Store(RolloutStore, AggregateStore, PolicyStore, Protocol):
    def transaction(self) -> AbstractContextManager[None]: ...

    def ping(self) -> None: ...

    # gateways and their batch chain
    def get_gateway(self, gateway_id: str) -> GatewayRow | None: ...
    def gateway_by_token_hash(self, token_hash: str) -> GatewayRow | None: ...
    def list_gateways(self) -> list[GatewayRow]: ...
    def insert_gateway(self, row: GatewayRow, token_hash: str) -> None: ...
    def set_gateway_token(self, gateway_id: str, token_hash: str) -> None: ...
    def batch_digest(self, gateway_id: str, seq: int) -> str | None: ...
    def append_batch(self, row: BatchRow) -> None:
        """Store the batch row (or gap) and move the gateway's chain head to it."""
        ...

    def gaps(self, gateway_id: str, limit: int) -> list[BatchRow]:
        """The gateway's gaps, newest (highest seq) first."""
        ...

    def gap_counts(self) -> dict[str, int]:
        """gateway id -> number of gaps in its chain (gateways without gaps left out)."""
        ...

    # devices and telemetry
    def get_device(self, device_id: str) -> DeviceRow | None: ...
    def list_devices(self) -> list[DeviceRow]: ...
    def insert_device(self, row: DeviceRow) -> bool:
        """Insert unless the id exists; True when inserted."""
        ...

    def save_device(self, row: DeviceRow) -> None:
        """Insert or replace every column of the device."""
        ...

    def insert_telemetry(self, rows: Sequence[TelemetryRow]) -> int:
        """Insert rows whose (device, incarnation, seq) is new; returns how many were
        inserted."""
        ...

    def telemetry(
        self, device_id: str, incarnation: int, after_seq: int, limit: int
    ) -> list[TelemetryRow]:
        """The incarnation's records with seq > after_seq, in seq order."""
        ...

    def telemetry_between(
        self, device_id: str, incarnation: int, low: int, high: int
    ) -> list[TelemetryRow]:
        """The incarnation's records with low <= seq <= high."""
        ...

    def incarnations(self, device_id: str) -> list[int]:
        """The device's incarnations that have records, in the order they first arrived."""
        ...

    def add_incarnation(self, device_id: str, incarnation: int, now_ms: int) -> None:
        """Append an incarnation to the device's list (it must not be there yet)."""
        ...

    def record_key(self, device_id: str) -> bytes | None: ...
    def set_record_key(self, device_id: str, key: bytes, now_ms: int) -> None:
        """Store the device's record key (the device must exist and have none)."""
        ...

    def record_key_devices(self) -> set[str]:
        """The ids of the devices that have a record key."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts: gateways, batches, devices, telemetry, configs, quarantine."""
        ...

    # consent
    def metric_rows(self, device_id: str) -> list[TelemetryRow]:
        """Every metric row (not consent records) of the device, in no particular order."""
        ...

    def set_metrics(
        self, device_id: str, updates: Sequence[tuple[int, int, dict[str, Any]]]
    ) -> None:
        """Replace the metrics of the device's rows given as (incarnation, seq, metrics)."""
        ...

    def insert_consent_audit(self, row: ConsentAuditRow) -> None: ...
    def consent_audit(self, device_id: str, limit: int) -> list[ConsentAuditRow]:
        """The device's audit rows, newest first."""
        ...

    # vitals
    def insert_heartbeats(self, rows: Sequence[HeartbeatRow], keep: int) -> None:
        """Store the states, then keep only the newest `keep` (by device time, then arrival)
        of each device concerned."""
        ...

    def heartbeats(self, device_id: str, limit: int) -> list[HeartbeatRow]:
        """The device's newest states first (device time, then arrival)."""
        ...

    # quarantine
    def insert_quarantine(self, rows: Sequence[QuarantineRow]) -> None: ...
    def quarantine(self, device_id: str | None, limit: int) -> list[QuarantineRow]:
        """Newest first; one device's, or the whole fleet's when device_id is None."""
        ...

    def quarantine_counts(self) -> dict[str, int]:
        """device id -> quarantined items (devices without any left out)."""
        ...

    def quarantine_count(self, device_id: str) -> int: ...

    # desired config
    def latest_config(self, device_id: str) -> ConfigRow | None: ...
    def insert_config(
        self, device_id: str, version: int, issued_ms: int, settings: dict[str, Any], envelope: str
    ) -> int:
        """Store a config version; returns its new global revision."""
        ...

    def configs_after(self, revision: int, gateway_id: str) -> list[ConfigRow]:
        """The latest config of each device whose latest revision is > `revision`, for the
        devices that gateway serves: those assigned to it, and those not assigned yet."""
        ...

    def reannounce_config(self, device_id: str) -> int | None:
        """Give the device's latest config the next global revision (same version, same
        envelope), so every gateway whose cursor is below it sees it again; returns the new
        revision, None when the device has no config."""
        ...

    def max_config_revision(self) -> int: ...
    def desired_versions(self) -> dict[str, int]: ...

    # series (cloud.services.series)
    def metric_buckets(
        self, device_id: str, metric: str, from_ms: int, to_ms: int, bucket_ms: int
    ) -> list[Bucket]:
        """The device's numeric values of `metric` (booleans as 0/1) in records with
        from_ms <= t < to_ms, grouped into buckets of bucket_ms from from_ms: count, min,
        max and mean per non-empty bucket, oldest first. Only the chunks that reach into the
        range are read (cloud.telemetry_db)."""
        ...

    def heartbeats_between(
        self, device_id: str, from_ms: int, to_ms: int, limit: int
    ) -> list[HeartbeatRow]:
        """The device's states with from_ms <= t < to_ms, oldest first, at most `limit`."""

    # access: tokens, audit, dashboard sessions
    def insert_token(self, row: TokenRow, token_hash: str) -> int:
        """Store a token (row.id ignored); returns its id."""
        ...

    def token_by_hash(self, token_hash: str) -> TokenRow | None: ...
    def get_token(self, token_id: int) -> TokenRow | None: ...
    def list_tokens(self) -> list[TokenRow]:
        """Every token, oldest first."""
        ...

    def revoke_token(self, token_id: int, now_ms: int) -> None: ...
    def touch_token(self, token_id: int, now_ms: int) -> None:
        """Set last_used_ms."""
        ...

    def insert_audit(self, row: AuditRow) -> int:
        """Store an audit entry (row.id ignored); returns its id."""
        ...

    def audit_entries(
        self, limit: int, before: int | None, actor: str | None, action: str | None,
        target: str | None, outcome: str | None = None,
    ) -> list[AuditRow]:
        """Newest first; id < before when given; exact matches on the given filters."""
        ...

    def insert_session(self, row: SessionRow) -> None: ...
    def session_by_hash(self, id_hash: str) -> SessionRow | None: ...
    def delete_session(self, id_hash: str) -> None: ...
    def delete_sessions_before(self, now_ms: int) -> None:
        """Drop the sessions that expired before now_ms."""
        ...

    # registry, customers, cohorts, profiles, revocation lists
    def registry(self, device_id: str) -> RegistryRow | None: ...
    def registries(self, customer: str | None = None) -> list[RegistryRow]:
        """Every device's registry row, by id; only one customer's when `customer` is given."""
        ...

    def set_registry(self, row: RegistryRow) -> None:
        """Write the registry columns of an existing device (not its product)."""
        ...

    def revoked_devices(self) -> list[RegistryRow]:
        """Devices whose status is revoked, by id."""
        ...

    def insert_customer(self, row: CustomerRow) -> bool:
        """Insert unless the id exists; True when inserted."""
        ...

    def get_customer(self, customer_id: str) -> CustomerRow | None: ...
    def list_customers(self) -> list[CustomerRow]: ...
    def set_customer_cancelled(self, customer_id: str, now_ms: int) -> None: ...
    def save_cohort(self, row: CohortRow) -> None:
        """Insert or replace the cohort (created_ms kept when it exists)."""
        ...

    def get_cohort(self, name: str) -> CohortRow | None: ...
    def list_cohorts(self) -> list[CohortRow]: ...
    def delete_cohort(self, name: str) -> bool: ...
    def insert_profile(self, row: ProfileRow) -> None:
        """Store a new version of a profile; it becomes the active one of its scope."""
        ...

    def profiles(self, kind: str, scope: str) -> list[ProfileRow]:
        """Every version of one profile, newest first."""
        ...

    def active_profiles(self) -> list[ProfileRow]:
        """The active version of every profile."""
        ...

    def insert_crl(self, row: CrlRow) -> None: ...
    def latest_crl(self) -> CrlRow | None: ...

    # liveness and drift, read in bulk (cloud.services.drift)
    def latest_configs(self) -> dict[str, ConfigRow]:
        """Every device's newest desired config, by device (one query)."""
        ...

    # the ingest path ----------------------------------------------------------------------

    def insert_records(
        self, device_id: str, gateway: str, batch_seq: int, records: Sequence[dict[str, Any]]
    ) -> int:
        """insert_telemetry of one device's records of one batch as parsed (protocol.record
        objects: `s`, `t`, and `i`, `m` or a consent record's `c` when present)."""
        ...

    def insert_telemetry_values(self, rows: Sequence[TelemetryValues]) -> int:
        """insert_telemetry of plain tuples (device, incarnation, seq, t, m, gateway,
        batch_seq, consent), without a row object each (the simulator's and tools' bulk
        loads; the ingest path uses insert_records)."""
        ...
