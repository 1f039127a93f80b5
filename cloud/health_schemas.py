"""What the health API answers (cloud.routers.health): KPIs, health scores with their
components, and the churn-risk list. Built from cloud.loop's dataclasses."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cloud.loop.churn import Risk
from cloud.loop.health import Component, CustomerHealth, DeviceHealth
from cloud.loop.kpis import DeviceKpis, Kpi


class KpiPublic(BaseModel):
    name: str
    value: float | int | str | None = Field(description="None when status is not ok")
    unit: str
    tier: str = Field(description="the consent tier the KPI needs (protocol.consent)")
    status: str = Field(description="ok | no data | not computed (consent does not allow it)")
    reason: str = Field(description="why there is no value; empty when ok")


class KpisPublic(BaseModel):
    device: str
    product: str | None
    at_ms: int = Field(description="the KPIs are as of this moment (record time)")
    consent: str | None = Field(description="the device's effective consent tier; None: never "
                                "reported (its data is stored as sent)")
    kpis: list[KpiPublic]
    weekly: list[int] = Field(description="rides, sessions or flights in each of the last 12 "
                              "weeks before at_ms, oldest first")


class ComponentPublic(BaseModel):
    name: str = Field(description="recency | frequency | outcome | device | consent")
    score: int | None = Field(description="0-100; None: cannot be judged (left out of the score)")
    why: str


class DeviceHealthPublic(BaseModel):
    device: str
    product: str | None
    customer: str | None
    score: int | None = Field(description="0-100: the weighted mean of the known components")
    components: list[ComponentPublic]
    risk: str | None = Field(description="the churn-risk reason when the device is listed")


class CustomerHealthPublic(BaseModel):
    customer: str
    devices: list[str]
    score: int | None = Field(description="0-100: the mean of the devices' scores")
    components: list[ComponentPublic] = Field(description="each the mean of the devices'")
    weakest: str | None = Field(description="the device with the lowest score")


class RiskPublic(BaseModel):
    device: str
    customer: str | None
    product: str | None
    kind: str = Field(description="declining | lapsed | consent")
    reason: str
    since_ms: int | None = Field(description="when it began: the decline's onset or the last "
                                 "activity")
    score: int | None = Field(description="the device's health score")


class HealthReport(BaseModel):
    at_ms: int
    devices: list[DeviceHealthPublic]


class CustomerReport(BaseModel):
    at_ms: int
    customers: list[CustomerHealthPublic]


class ChurnList(BaseModel):
    at_ms: int
    risks: list[RiskPublic] = Field(description="declining first, then lapsed, then consent; "
                                    "lowest health first within each")


def kpi_public(k: Kpi) -> KpiPublic:
    return KpiPublic(name=k.name, value=k.value, unit=k.unit, tier=k.tier, status=k.status,
                     reason=k.reason)


def kpis_public(k: DeviceKpis) -> KpisPublic:
    return KpisPublic(device=k.device, product=k.product, at_ms=k.at_ms, consent=k.consent,
                      kpis=[kpi_public(x) for x in k.kpis], weekly=k.weekly)


def components(cs: list[Component]) -> list[ComponentPublic]:
    return [ComponentPublic(name=c.name, score=c.score, why=c.why) for c in cs]


def device_public(d: DeviceHealth) -> DeviceHealthPublic:
    return DeviceHealthPublic(device=d.device, product=d.product, customer=d.customer,
                              score=d.score, components=components(d.components),
                              risk=d.risk.reason if d.risk is not None else None)


def customer_public(c: CustomerHealth) -> CustomerHealthPublic:
    return CustomerHealthPublic(customer=c.customer, devices=c.devices, score=c.score,
                                components=components(c.components), weakest=c.weakest)


def risk_public(r: Risk) -> RiskPublic:
    return RiskPublic(device=r.device, customer=r.customer, product=r.product, kind=r.kind,
                      reason=r.reason, since_ms=r.since_ms, score=r.score)
