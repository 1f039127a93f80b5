"""Rollouts: ops start, pause, resume and abort them; ops and technicians watch them
(cloud.services.rollouts, cloud.services.progress). Reading a rollout moves it on first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep
from cloud.openapi import errors
from cloud.rollout_schemas import RolloutCreate, RolloutPublic
from cloud.services import rollouts as service

router = APIRouter(prefix="/api/v1/rollouts", tags=["updates"])
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN))]
Ops = Annotated[Principal, Depends(requires(Role.OPS))]
RolloutId = Annotated[str, Path(pattern=service.ID_PATTERN, examples=["r-3"])]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RolloutPublic,
             openapi_extra={"x-audit-action": "rollout.create"})
def create(body: RolloutCreate, caller: Ops, store: DbDep, now_ms: NowDep) -> RolloutPublic:
    """Start a rollout of a bundle to the bundle's product's devices in a cohort or a list,
    in waves (percent of the devices done by each wave's end, default 1, 10, 50, 100). Wave 1
    starts now. Left out, with reasons (`skipped`): devices already on the version or newer,
    below its min_version, not on a delta's base, in another rollout, or (from a list) of
    another product, decommissioned or revoked. 201 with the plan; 422 with every reason it
    cannot be started (an unknown bundle, cohort or device, bad waves, no device to update)."""
    spec = service.Spec(
        bundle=body.bundle, cohort=body.cohort,
        devices=None if body.devices is None else tuple(body.devices),
        waves=tuple(body.waves), soak_s=body.soak_s, failure_threshold=body.failure_threshold,
        deadline_s=body.deadline_s, heap_ratio=body.heap_ratio)
    row = service.create(store, caller, spec, now_ms)
    return RolloutPublic.of(service.view(store, row.id, now_ms))


@router.get("", response_model=list[RolloutPublic], dependencies=READ)
def list_rollouts(store: DbDep, now_ms: NowDep) -> list[RolloutPublic]:
    """Every rollout, newest first: its state, counts by word and waves (no device list)."""
    return [RolloutPublic.of(v, detail=False) for v in service.views(store, now_ms)]


@router.get("/{rollout_id}", response_model=RolloutPublic, dependencies=READ)
def get_rollout(rollout_id: RolloutId, store: DbDep, now_ms: NowDep) -> RolloutPublic:
    """One rollout: its state and why, each wave (size, counts by word, start, end of its
    soak), each device (wave, word, progress, reason, firmware, since) and the devices left
    out. 404 unknown."""
    return RolloutPublic.of(service.view(store, rollout_id, now_ms))


def _control(action: str, summary: str) -> None:
    @router.post(f"/{{rollout_id}}/{action}", response_model=RolloutPublic,
                 responses=errors(409), openapi_extra={"x-audit-action": f"rollout.{action}"},
                 name=f"{action}_rollout", description=summary)
    def endpoint(rollout_id: RolloutId, caller: Ops, store: DbDep, now_ms: NowDep
                 ) -> RolloutPublic:
        return RolloutPublic.of(service.control(store, caller, rollout_id, action, now_ms))


_control("pause", "Pause a running rollout: no new offers (devices mid-download keep theirs)."
         " 409 when it is not running; 404 unknown.")
_control("resume", "Resume a paused or auto-paused rollout. Resuming after an auto-pause"
         " accepts the failures that paused it (new failures pause it again), and the audit"
         " entry says so. 409 when it is neither; 404 unknown.")
_control("abort", "Abort a rollout: every offer is withdrawn, the final words stay. 409 when"
         " it was aborted before; 404 unknown.")
