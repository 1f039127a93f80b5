"""Pydantic schemas of the updates API: bundles, rollouts and the gateway's offers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.rollout_store import BundleRow, RolloutDeviceRow, WaveRow
from cloud.schemas import Id
from cloud.services import bundles, waves
from cloud.services.rollouts import MAX_DEVICES, View

Word = Literal["pending", "offered", "downloading", "verified", "installing", "rebooting",
               "committed", "success", "rolled_back", "failure"]  # protocol.ota.STATUSES
State = Literal["running", "paused", "auto_paused", "aborted", "completed"]  # progress.STATES
COHORT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # cloud.routers.cohorts.Name


class BundlePublic(BaseModel):
    key: str = Field(examples=["bike-0.2.0"], description="<product>-<version>, and"
                     " -from-<base> for a delta")
    id: str = Field(description="the offer id: first 16 hex of the manifest's sha256")
    kind: Literal["full", "delta"]
    base: str | None = Field(description="a delta's base version")
    product: str
    version: str
    min_version: str
    bytes: int = Field(description="size of the bundle file")
    files: int = Field(description="files in the manifest")
    carried: int = Field(description="files the bundle carries (a delta: the changed ones)")
    sha256: str = Field(description="of the bundle file")
    created_ms: int
    created_by: str

    @staticmethod
    def of(row: BundleRow) -> BundlePublic:
        return BundlePublic(
            key=row.key, id=row.offer_id, kind=row.kind,  # type: ignore[arg-type]
            base=row.base, product=row.product, version=row.version,
            min_version=row.min_version, bytes=row.size, files=row.files, carried=row.carried,
            sha256=row.sha256, created_ms=row.created_ms, created_by=row.created_by)


class RolloutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str = Field(pattern=bundles.KEY_PATTERN, examples=["bike-0.2.0"])
    cohort: str | None = Field(None, pattern=COHORT_PATTERN, description="a cohort, or ...")
    devices: list[Id] | None = Field(None, min_length=1, max_length=MAX_DEVICES,
                                     description="... a list of device ids")
    waves: list[float] = Field(list(waves.DEFAULT_WAVES), min_length=1,
                               max_length=waves.MAX_WAVES,
                               description="percent of the devices done by the end of each"
                               " wave: rising, the last 100")
    soak_s: int = Field(3600, ge=0, le=30 * 86400,
                        description="how long a wave, and each committed device, is watched")
    failure_threshold: float = Field(0.1, ge=0, le=1, description="a wave whose share of"
                                     " failure + rolled_back is above it auto-pauses")
    deadline_s: int = Field(3600, ge=1, le=30 * 86400, description="a device that started"
                            " and then is silent this long has failed")
    heap_ratio: float = Field(0.8, ge=0, le=1, description="lowest free heap after commit"
                              " must stay at least this share of its baseline")

    @model_validator(mode="after")
    def _one_target(self) -> RolloutCreate:
        if (self.cohort is None) == (self.devices is None):
            raise ValueError("give either a cohort or a list of devices")
        problems = waves.check(self.waves)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RolloutWavePublic(BaseModel):
    wave: int
    percent: float
    devices: int
    counts: dict[str, int] = Field(description="devices by word")
    started_ms: int | None
    soak_until_ms: int | None = Field(description="the earliest the next wave may start")


class RolloutDevicePublic(BaseModel):
    device: str
    wave: int
    word: Word
    progress: int | None = Field(description="percent downloaded, as the device says")
    reason: str = Field(description="why it failed or rolled back")
    version: str | None = Field(description="the firmware its latest state reported")
    since_ms: int = Field(description="when it got its word")


class SkippedDevice(BaseModel):
    device: str
    reason: str


class RolloutPublic(BaseModel):
    id: str = Field(examples=["r-3"])
    bundle: str
    product: str
    version: str
    target: dict[str, Any] = Field(description='{"cohort": name} or {"devices": [...]}')
    state: State
    reason: str = Field(description="why it is in its state (an auto-pause's wave figures)")
    waves_asked: list[float]
    soak_s: int
    failure_threshold: float
    deadline_s: int
    heap_ratio: float
    created_ms: int
    created_by: str
    updated_ms: int
    counts: dict[str, int] = Field(description="devices by word")
    waves: list[RolloutWavePublic]
    devices: list[RolloutDevicePublic] | None = Field(
        None, description="every device (GET /api/v1/rollouts/{rollout_id} only)")
    skipped: list[SkippedDevice] | None = Field(
        None, description="devices left out and why (GET /api/v1/rollouts/{rollout_id} only)")

    @staticmethod
    def of(view: View, detail: bool = True) -> RolloutPublic:
        r = view.rollout
        return RolloutPublic(
            id=r.id, bundle=r.bundle, product=r.product, version=r.version, target=r.target,
            state=r.state,  # type: ignore[arg-type]
            reason=r.reason, waves_asked=r.waves, soak_s=r.soak_s,
            failure_threshold=r.failure_threshold, deadline_s=r.deadline_s,
            heap_ratio=r.heap_ratio, created_ms=r.created_ms, created_by=r.created_by,
            updated_ms=r.updated_ms, counts=view.counts(),
            waves=[wave(w, view, r.soak_s) for w in view.waves],
            devices=[device(d) for d in view.devices] if detail else None,
            skipped=[SkippedDevice(device=d, reason=why) for d, why in r.skipped] if detail else None)


def wave(w: WaveRow, view: View, soak_s: int) -> RolloutWavePublic:
    return RolloutWavePublic(wave=w.wave, percent=w.percent, devices=w.size, counts=view.counts(w.wave),
                      started_ms=w.started_ms,
                      soak_until_ms=None if w.started_ms is None else w.started_ms + soak_s * 1000)


def device(d: RolloutDeviceRow) -> RolloutDevicePublic:
    return RolloutDevicePublic(device=d.device, wave=d.wave, word=d.word,  # type: ignore[arg-type]
                        progress=d.progress, reason=d.reason, version=d.version,
                        since_ms=d.since_ms)


class OfferPublic(BaseModel):
    device: str
    bundle: str = Field(description="the bundle's key: GET /api/v1/gateway/bundles/{key}")
    base: str | None = Field(description="a delta's base version: its manifest is"
                             " GET /api/v1/gateway/manifests/{version}?product=P")
    offer: dict[str, Any] = Field(description="protocol.ota's offer, to publish retained on"
                                  " fleet/<device>/update")


class Offers(BaseModel):
    offers: list[OfferPublic]
