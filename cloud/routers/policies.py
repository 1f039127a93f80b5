"""Policies as experiments: ops and admins create and stop them; analysts read them
(cloud.services.policies; the judging is cloud.services.policy_judge, on the cloud's clock)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from fastapi.responses import HTMLResponse

from cloud import policy_pages, render
from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep, SignerDep
from cloud.loop.experiment_kpis import Clause
from cloud.openapi import errors
from cloud.policy_schemas import PolicyCreate, PolicyPublic
from cloud.routers.dashboard import dashboard_of
from cloud.services import policies as service

router = APIRouter(prefix="/api/v1/policies", tags=["policies"])
READ = [Depends(requires(Role.OPS, Role.ANALYST))]
Ops = Annotated[Principal, Depends(requires(Role.OPS))]
PolicyId = Annotated[int, Path(ge=1, le=2**53 - 1)]


def spec_of(body: PolicyCreate) -> service.Spec:
    return service.Spec(
        name=body.name, product=body.product, change=dict(body.change),
        outcome_kpi=body.outcome.kpi, goal=body.outcome.goal,
        condition=tuple(Clause(c.kpi, c.op, c.value) for c in body.condition),
        cohort=body.cohort, devices=None if body.devices is None else tuple(body.devices),
        treatment_share=body.treatment_share, window_days=body.window_days,
        max_extensions=body.max_extensions, start_ms=body.start_ms, seed=body.seed)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PolicyPublic,
             responses=errors(409), openapi_extra={"x-audit-action": "policy.create"})
def create(body: PolicyCreate, caller: Ops, store: DbDep, signer: SignerDep, now_ms: NowDep
           ) -> PolicyPublic:
    """Start a policy as an experiment: the product's devices (of a cohort or a list) that
    meet every clause of the condition are split at random into treatment and control, and
    the change goes to the treatment devices as a new signed config. Left out, with reasons
    (`excluded`): devices whose consent does not cover a KPI the policy reads, devices in
    another running experiment, devices out of service. 422 with every reason: an unknown
    KPI (or one of another product), a change outside the device config's bounds, a name in
    use, fewer than two devices taking part; 503 without the config-signing key."""
    return PolicyPublic.of(service.create(store, signer, caller, spec_of(body), now_ms))


@router.get("", response_model=list[PolicyPublic], dependencies=READ)
def list_policies(store: DbDep) -> list[PolicyPublic]:
    """Every policy, newest first, with its arms and evaluations."""
    return [PolicyPublic.of(v) for v in service.views(store)]


@router.get("/{policy_id}", response_model=PolicyPublic, dependencies=READ)
def get_policy(policy_id: PolicyId, store: DbDep) -> PolicyPublic:
    """One policy: its state and why, arms, devices left out and every evaluation (window,
    arms' sizes and mean outcome change, lift with its 95% interval, decision). 404 unknown."""
    return PolicyPublic.of(service.view(store, policy_id))


@router.post("/{policy_id}/stop", response_model=PolicyPublic, responses=errors(409),
             openapi_extra={"x-audit-action": "policy.stop"})
def stop(policy_id: PolicyId, caller: Ops, store: DbDep, signer: SignerDep, now_ms: NowDep
         ) -> PolicyPublic:
    """Revert the change now (a kept policy's too, from both arms): state stopped. 409 when
    it is already reverted or stopped; 404 unknown."""
    return PolicyPublic.of(service.stop(store, signer, caller, policy_id, now_ms))


# The dashboard's pages (cloud.policy_pages): ops and analysts, like the API's reads.
pages = APIRouter(tags=["dashboard"])
PolicyViewer = Annotated[render.Viewer | None, Depends(dashboard_of(Role.OPS, Role.ANALYST))]
TRAIL = 200  # audit entries shown on a policy's page


@pages.get("/policies", response_class=HTMLResponse)
def policies_page(viewer: PolicyViewer, store: DbDep) -> HTMLResponse:
    """Every policy: its change, state, arms, last lift with its interval and window end."""
    return HTMLResponse(policy_pages.policies_page(service.views(store), viewer),
                        headers=render.SECURITY_HEADERS)


@pages.get("/policies/{policy_id}", response_class=HTMLResponse)
def policy_page(policy_id: PolicyId, viewer: PolicyViewer, store: DbDep) -> HTMLResponse:
    """A policy's page: its settings and state, the lift of every evaluation drawn as its
    95% interval around zero, the evaluations, the arms, the devices left out and the audit
    trail. 404 unknown."""
    view = service.view(store, policy_id)
    trail = store.audit_entries(TRAIL, None, None, None, f"policy:{policy_id}")
    return HTMLResponse(policy_pages.policy_page(view, trail, viewer),
                        headers=render.SECURITY_HEADERS)
