"""Pydantic schemas of the registry, cohort, profile, drift and customer API (cloud.schemas
has the rest; kept apart so each stays readable)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.schemas import Id

Reason = Annotated[str, Field(min_length=1, max_length=500)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
RuleValue = Annotated[str, Field(min_length=1, max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerCreate(_In):
    id: Id = Field(examples=["acme"])
    name: Name = Field(examples=["Acme Fitness"])


class CustomerPublic(BaseModel):
    id: str
    name: str
    created_ms: int
    cancelled_ms: int | None = Field(description="when the customer cancelled; null: active")
    devices: list[str] = Field(description="ids of its products")


class DeviceCustomerPut(_In):
    customer: Id | None = Field(examples=["acme"], description="null: belongs to nobody")


class StatusChange(_In):
    reason: Reason = Field(examples=["returned, unit destroyed"])


class Rule(_In):
    """Every key given must match; a list matches any of its values."""

    product: RuleValue | list[RuleValue] | None = None
    customer: RuleValue | list[RuleValue] | None = None
    hw_rev: RuleValue | list[RuleValue] | None = None
    firmware: RuleValue | list[RuleValue] | None = None
    gateway: RuleValue | list[RuleValue] | None = None
    consent: RuleValue | list[RuleValue] | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CohortPut(_In):
    rule: Rule | None = Field(default=None, examples=[{"product": "bike", "hw_rev": ["r2"]}])
    devices: list[Id] | None = Field(default=None, max_length=10000,
                                     examples=[["bike-1", "bike-2"]])
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000,
                          description="higher wins when two cohorts set the same key")


class CohortCreate(CohortPut):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")] = Field(
        examples=["bikes-r2"])


class CohortPublic(BaseModel):
    name: str
    kind: Literal["rule", "list"]
    rule: dict[str, list[str]] | None
    devices: list[str] | None
    priority: int
    created_ms: int
    updated_ms: int


class CohortMembers(BaseModel):
    name: str
    devices: list[str] = Field(description="its active members, sorted")


class ProfilePut(_In):
    settings: dict[str, Any] = Field(examples=[{"interval_ms": 500, "heartbeat_s": 30}])


class ProfileVersion(BaseModel):
    version: int
    settings: dict[str, Any]
    created_ms: int
    created_by: str
    active: bool


class ProfilePublic(BaseModel):
    kind: Literal["product", "cohort", "device"]
    scope: str
    version: int = Field(description="the active (newest) version")
    settings: dict[str, Any]
    history: list[ProfileVersion] = Field(description="every version, newest first")
    configs: dict[str, int] = Field(
        default_factory=dict,
        description="devices that got a new config version from this change -> that version")


class DriftPublic(BaseModel):
    device: str
    desired_version: int
    reported_version: int | None
    status: Literal["rejected", "offline", "not yet applied"]
    reason: str
    last_heard_ms: int | None = Field(
        description="when it was last heard from: the newest timestamp of its stored records"
        " and states (device clock)")
    online: bool = Field(default=False, description="heard from within `intervals` heartbeats")


class Revocation(BaseModel):
    device: str
    cert_serial: str | None = Field(description="hex serial of its certificate")
    cert_fingerprint: str | None
    revoked_ms: int | None
    reason: str | None


class CrlInfo(BaseModel):
    number: int
    created_ms: int
    bytes: int


class CancelResult(BaseModel):
    customer: str
    cancelled_ms: int | None
    devices: list[str] = Field(description="its products, now at consent tier essential")
