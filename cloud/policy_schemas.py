"""Pydantic schemas of the policies API (policies as experiments, cloud.services.policies)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.rollout_schemas import COHORT_PATTERN
from cloud.schemas import Id
from cloud.services import cohorts
from cloud.services.policies import View

NAME_PATTERN = r"^[a-z0-9-]{1,64}$"
Op = Literal["<", "<=", ">", ">=", "fell_by", "rose_by"]  # experiment_kpis.OPS
State = Literal["running", "kept", "reverted", "stopped"]  # policies.STATES
Decision = Literal["keep", "revert", "extend"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Clause(_In):
    kpi: str = Field(min_length=1, max_length=64, examples=["rides_per_week"],
                     description="a KPI of the product (GET /api/v1/devices/{id}/kpis)")
    op: Op = Field(description="fell_by / rose_by: relative change of the last 4 weeks"
                   " against the 4 weeks before (0.33 = a third)")
    value: float = Field(ge=-1e12, le=1e12, allow_inf_nan=False, examples=[0.33])


class Outcome(_In):
    kpi: str = Field(min_length=1, max_length=64, examples=["rides_per_week"])
    goal: Literal["increase", "decrease"] = "increase"


class PolicyCreate(_In):
    name: str = Field(pattern=NAME_PATTERN, examples=["coach-the-fading"],
                      description="unique among policies")
    product: Literal["bike", "mirror", "engine"]
    cohort: str | None = Field(None, pattern=COHORT_PATTERN,
                               description="only devices of this cohort, or ...")
    devices: list[Id] | None = Field(None, min_length=2, max_length=cohorts.MAX_LIST,
                                     description="... an explicit list of device ids")
    condition: list[Clause] = Field([], max_length=16,
                                    description="all must hold for a device to take part")
    change: dict[str, Any] = Field(examples=[{"coach_mode": 1}],
                                   description="config keys and values (protocol.config)")
    outcome: Outcome
    treatment_share: float = Field(0.5, ge=0.1, le=0.9)
    window_days: int = Field(14, ge=1, le=365, description="on record time")
    max_extensions: int = Field(2, ge=0, le=4,
                                description="extra windows when inconclusive")
    start_ms: int | None = Field(None, ge=0, le=2**53 - 1, description="record time the"
                                 " first window starts; default: the newest record time"
                                 " among the participants")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="the split's seed")


class Excluded(BaseModel):
    device: str
    reason: str


class Evaluation(BaseModel):
    at_ms: int = Field(description="cloud clock of the decision")
    window_start_ms: int
    window_end_ms: int
    treatment_n: int
    control_n: int
    treatment_mean: float | None = Field(description="mean per-device outcome change")
    control_mean: float | None
    lift: float | None = Field(description="treatment mean minus control mean")
    ci_low: float | None = Field(description="95% interval (Welch); null: too few devices")
    ci_high: float | None
    decision: Decision
    record_clock_ms: int | None = Field(None, description="the policy's record clock when"
                                        " it was judged")


class PolicyPublic(BaseModel):
    id: int
    name: str
    product: str
    cohort: str | None
    devices: list[str] | None
    condition: list[Clause]
    change: dict[str, Any]
    outcome: Outcome
    treatment_share: float
    window_days: int
    max_extensions: int
    start_ms: int | None
    seed: int
    state: State
    reason: str = Field(description="why it is in its state")
    created_ms: int
    created_by: str
    window_start_ms: int
    window_end_ms: int
    extensions: int
    treatment: list[str]
    control: list[str]
    excluded: list[Excluded]
    evaluations: list[Evaluation]

    @staticmethod
    def of(v: View) -> PolicyPublic:
        p = v.policy
        return PolicyPublic(
            **p.spec, id=p.id, seed=p.seed, state=p.state,  # type: ignore[arg-type]
            reason=p.reason, created_ms=p.created_ms, created_by=p.created_by,
            window_start_ms=p.window_start_ms, window_end_ms=p.window_end_ms,
            extensions=p.extensions, treatment=v.treatment, control=v.control,
            excluded=[Excluded(device=e.device, reason=e.reason) for e in v.excluded],
            evaluations=[Evaluation.model_validate({**e.evidence, "at_ms": e.at_ms})
                         for e in v.evaluations])
