"""Pydantic schemas of the HTTP API (XCreate in, XPublic out). Batches are not here: the ingest
body is raw signed bytes, checked by protocol.batch, never parsed into models."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from protocol.tag import KEY_BYTES as RECORD_KEY_BYTES
from protocol.topics import valid_device_id


def _device_id(value: str) -> str:
    if not valid_device_id(value):
        raise ValueError("must be 1-64 chars of [A-Za-z0-9_-], not starting with - or _")
    return value


def _public_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64") from exc
    if len(raw) != 32:
        raise ValueError("must be a raw 32-byte Ed25519 public key, base64-encoded")
    return value


def _record_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64") from exc
    if len(raw) != RECORD_KEY_BYTES:
        raise ValueError(f"must be exactly {RECORD_KEY_BYTES} bytes, base64-encoded")
    return value


Id = Annotated[str, AfterValidator(_device_id)]
Tier = Literal["essential", "usage", "personal"]  # protocol.consent.TIERS, narrowest first


def as_tier(value: str | None) -> Tier | None:
    """A stored tier as the API's type (ValueError for anything protocol.consent lacks)."""
    if value is not None and value not in get_args(Tier):
        raise ValueError(f"unknown consent tier {value!r}")
    return cast("Tier | None", value)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewayCreate(_In):
    id: Id = Field(examples=["gw-1"])
    public_key: Annotated[str, AfterValidator(_public_key)] = Field(
        description="raw 32-byte Ed25519 batch-signing public key, base64",
        examples=["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="],
    )

    def public_key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key)


class GatewayRegistered(BaseModel):
    id: str
    token: str = Field(description="bearer token for this gateway; shown once, stored hashed")


class DeviceCreate(_In):
    id: Id = Field(examples=["bike-1"])
    product: Id = Field(examples=["bike"])
    record_key: Annotated[str, AfterValidator(_record_key)] | None = Field(
        default=None,
        repr=False,
        description="the device's secret 32-byte record key (protocol.tag), base64; stored,"
        " never shown again. Once it is registered only records and states tagged with it"
        " are accepted from the device",
        examples=["ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="],
    )

    customer: Id | None = Field(default=None, examples=["acme"],
                                description="the customer it was sold to (must exist)")
    hw_rev: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")] | None = Field(
        default=None, examples=["r2"], description="hardware revision")
    cert_fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="sha256 (hex) of the device certificate's DER")
    cert_serial: Annotated[str, Field(pattern=r"^[0-9a-f]{1,40}$")] | None = Field(
        default=None, description="the device certificate's serial number (hex): what a CRL"
        " names when the device is revoked")

    def record_key_bytes(self) -> bytes | None:
        return None if self.record_key is None else base64.b64decode(self.record_key)


class DevicePublic(BaseModel):
    id: str
    product: str | None
    gateway: str | None = Field(
        description="the assigned gateway: the first to deliver its data, or set by an operator"
    )
    last_seen_ms: int | None = Field(description="newest device timestamp received")
    incarnation: int = Field(
        description="its latest incarnation that delivered records (0: untagged version 1)"
    )
    last_seq: int = Field(description="the newest seq of that incarnation")
    records: int
    quarantined: int = Field(description="its records and states held in quarantine")
    conflicts: int = Field(
        description="records that arrived with an identity already stored but other content"
        " (quarantined, also counted in `quarantined`)"
    )
    record_key_registered: bool = Field(
        description="a record key is enrolled: only tagged records and states are accepted"
    )
    last_metrics: dict[str, Any]
    reported: dict[str, Any] | None = Field(description="latest state message of the device")
    consent: Tier | None = Field(
        default=None,
        description="the effective consent tier (the narrower of the device's own and a"
        " narrowing requested in the cloud); null: the device never reported one (firmware"
        " from before consent, its data is stored as sent)",
    )
    vitals: dict[str, Any] | None = Field(
        default=None,
        description="the vitals of its latest state (uptime_s, heap_low, reconnects, ...),"
        " null when it sent none; GET .../vitals lists its states",
    )
    customer: str | None = Field(default=None, description="the customer it belongs to")
    hw_rev: str | None = Field(default=None, description="hardware revision (factory)")
    cert_fingerprint: str | None = Field(
        default=None, description="sha256 (hex) of its certificate's DER (factory)")
    enrolled_ms: int | None = Field(default=None, description="first enrolment, cloud clock")
    status: Literal["active", "decommissioned", "revoked"] = Field(
        default="active", description="decommissioned or revoked: its data is refused")
    status_ms: int | None = Field(default=None, description="when the status was set")
    status_reason: str | None = Field(default=None, description="why, as ops gave it")


class DeviceGatewayPut(_In):
    gateway: Id = Field(examples=["gw-2"], description="a registered gateway")


class QuarantinePublic(BaseModel):
    id: int = Field(description="increasing: newer items have larger ids")
    device: str | None = Field(description="its device id, when that id is valid")
    seq: int | None = Field(description="its seq (`s`), when that is an int")
    kind: str = Field(description="record or state")
    reason: str
    gateway: str = Field(description="the gateway whose batch carried it")
    batch_seq: int
    received_ms: int = Field(description="cloud clock when its batch arrived")
    body: str = Field(description="the item's JSON, cut to 4096 characters")


class GapPublic(BaseModel):
    seq: int = Field(description="the refused batch's place in the gateway's chain")
    digest: str = Field(description="the refused batch's digest")
    records: int
    states: int
    status: int = Field(description="the HTTP status the batch was refused with; 0 for a drop: "
                        "batches the gateway dropped unsent because its spool went over its "
                        "budget (the reason names them)")
    reason: str
    created_ms: int = Field(description="gateway clock when the gap was sealed")
    received_ms: int = Field(description="cloud clock when the gap arrived")


class GatewayPublic(BaseModel):
    id: str
    created_ms: int
    last_seq: int = Field(description="seq of the last batch (or gap) in its chain")
    last_batch_ms: int | None = Field(description="cloud clock when it last extended its chain")
    gaps: int = Field(description="refused batches the gateway replaced by a signed gap")
    latest_gaps: list[GapPublic] = Field(description="the newest gaps, newest first")


class TelemetryRecord(BaseModel):
    incarnation: int = Field(description="0 for untagged version 1 records")
    seq: int
    t: int
    m: dict[str, Any] = Field(description="metrics ({} for a consent record)")
    consent: dict[str, Any] | None = Field(
        default=None,
        description="a consent record's `c` (cfg, origin, tier); absent for metric records",
    )


class TelemetryPage(BaseModel):
    device: str
    records: list[TelemetryRecord]


class ConsentPut(_In):
    tier: Tier = Field(examples=["usage"], description="the tier to narrow the device to")


class ConsentAudit(BaseModel):
    id: int = Field(description="increasing: newer entries have larger ids")
    at_ms: int = Field(description="cloud clock")
    origin: str = Field(description="device (the customer on the product) or cloud (their"
                        " account)")
    requested_by: str = Field(description="the consent record (incarnation/seq), the admin"
                              " token, or late arrival (records sampled before a narrowing)")
    from_tier: str | None = Field(description="effective tier before (null: unrestricted)")
    to_tier: str
    fields: list[str] = Field(description="metric names removed")
    rows: int = Field(description="stored records changed")


class ConsentView(BaseModel):
    device: str
    tier: Tier | None = Field(description="effective tier: the narrower of reported and cap;"
                              " null when neither is known (data stored as sent)")
    reported: Tier | None = Field(description="the tier of the device's newest consent record")
    cap: Tier | None = Field(description="a narrowing requested in the cloud, until the device"
                             " shows it applied it")
    cap_version: int | None = Field(description="the config version that carries the cap")


class ConsentHistory(ConsentView):
    audit: list[ConsentAudit] = Field(description="every change and deletion, newest first")


class Heartbeat(BaseModel):
    incarnation: int = Field(description="0 for untagged version 1 states")
    t: int = Field(description="device clock")
    received_ms: int = Field(description="cloud clock when its batch arrived")
    state: dict[str, Any] = Field(description="the state as the device sent it, without its"
                                  " tag")


class ConfigPut(_In):
    settings: dict[str, Any] = Field(examples=[{"interval_ms": 500}])


class ConfigPublic(BaseModel):
    device: str
    version: int
    settings: dict[str, Any]


class DesiredConfig(BaseModel):
    version: int
    settings: dict[str, Any]


class ReportedConfig(BaseModel):
    config_version: int | None
    config_status: str
    reason: str


class DeviceConfig(BaseModel):
    desired: DesiredConfig | None
    reported: ReportedConfig | None


class ConfigEnvelope(BaseModel):
    device: str
    version: int
    envelope: str = Field(description="protocol.config envelope text, publish as-is")


class GatewayConfigs(BaseModel):
    revision: int = Field(description="newest revision; pass it as `after` next time")
    configs: list[ConfigEnvelope]


class IngestResult(BaseModel):
    stored: int = Field(description="records stored now")
    duplicates: int = Field(
        description="records whose identity (device, incarnation, seq) was stored before"
        " with the same content"
    )
    quarantined: int = Field(description="records and states held in quarantine, not stored")
    seq: int


class GapRecorded(BaseModel):
    seq: int
    replay: bool = Field(description="true when this gap was recorded before")


class Health(BaseModel):
    ok: bool


# -- access: tokens, audit, errors -----------------------------------------------------------

TokenRole = Literal["ops", "technician", "analyst", "factory", "admin", "customer"]


class TokenCreate(_In):
    name: str = Field(min_length=1, max_length=64, examples=["ops-alice"],
                      description="who or what uses the token (shown in the audit log)")
    role: TokenRole = Field(examples=["ops"])
    customer: Id | None = Field(default=None, examples=["acme"],
                                description="the customer a customer token belongs to"
                                " (required for role customer, refused for the others)")
    expires_days: int = Field(default=90, ge=1, le=3650, description="days until it expires")


class TokenPublic(BaseModel):
    id: int
    name: str
    role: str
    customer: str | None
    created_ms: int
    created_by: str = Field(description="the principal that created it")
    expires_ms: int
    revoked_ms: int | None = Field(description="when it was revoked; null: not revoked")
    last_used_ms: int | None = Field(description="last use, to the minute; null: never used")


class TokenIssued(TokenPublic):
    token: str = Field(description="the bearer token: shown only now, stored as its SHA-256")


class AuditEntry(BaseModel):
    id: int = Field(description="increasing: newer entries have larger ids (page with before)")
    at_ms: int = Field(description="cloud clock")
    actor: str = Field(description="the caller's name (a token's name, a gateway id, ...)")
    role: str
    token_id: int | None = Field(description="the API token used, if any")
    action: str = Field(examples=["config.put"])
    target: str = Field(examples=["device:bike-1"])
    before: Any = Field(default=None, description="small JSON of the state before, if any")
    after: Any = Field(default=None, description="small JSON of the state after, if any")
    outcome: Literal["ok", "refused"]
    reason: str = Field(description="why a write was refused (empty when ok)")


class ErrorDetail(BaseModel):
    """Every error the API answers: a sentence saying what is wrong."""

    detail: str = Field(examples=["device bike-9 not found"])


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path or header, then the field")
    msg: str = Field(description="what is wrong")
    type: str = Field(description="a short machine-readable kind")


class ValidationErrorDetail(BaseModel):
    """A 422: the request's shape was refused (a list of issues, never the input itself), or
    its values were (a sentence)."""

    detail: str | list[ValidationIssue]
