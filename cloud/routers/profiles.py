from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep, SignerDep
from cloud.fleet_schemas import DriftPublic, ProfilePublic, ProfilePut, ProfileVersion
from cloud.services import drift as drift_service
from cloud.services import profiles as service
from cloud.store import Store

router = APIRouter(tags=["profiles"])
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN))]
Kind = Literal["product", "cohort", "device"]
Scope = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
Ops = Annotated[Principal, Depends(requires(Role.OPS))]


def public(store: Store, kind: str, scope: str, configs: dict[str, int] | None = None
           ) -> ProfilePublic:
    rows = service.history(store, kind, scope)
    return ProfilePublic(
        kind=kind, scope=scope, version=rows[0].version,  # type: ignore[arg-type]
        settings=rows[0].settings,
        history=[ProfileVersion(version=r.version, settings=r.settings,
                                created_ms=r.created_ms, created_by=r.created_by,
                                active=r.active) for r in rows],
        configs=configs or {},
    )


@router.put("/api/v1/profiles/{kind}/{scope}", response_model=ProfilePublic,
            openapi_extra={"x-audit-action": "profile.put"})
def put_profile(
    kind: Kind, scope: Scope, body: ProfilePut, store: DbDep, signer: SignerDep,
    now_ms: NowDep, caller: Ops,
) -> ProfilePublic:
    """A new version of the desired settings of a product, cohort or device (precedence,
    key by key: device > cohort > product). Every device it concerns is resolved again and
    gets a new signed config version when its settings change (`configs`). 422 settings out
    of protocol.config's bounds; 404 unknown cohort or device; 503 no config-signing key."""
    change = service.put(store, signer, kind, scope, body.settings, caller, now_ms)
    return public(store, kind, scope, change.configs)


@router.get("/api/v1/profiles/{kind}/{scope}", response_model=ProfilePublic, dependencies=READ)
def get_profile(kind: Kind, scope: Scope, store: DbDep) -> ProfilePublic:
    """The active version and the history, newest first; 404 when there is none."""
    return public(store, kind, scope)


@router.post("/api/v1/profiles/{kind}/{scope}/rollback", response_model=ProfilePublic,
             openapi_extra={"x-audit-action": "profile.rollback"})
def rollback_profile(
    kind: Kind, scope: Scope, store: DbDep, signer: SignerDep, now_ms: NowDep, caller: Ops,
    version: Annotated[int, Query(ge=1, le=2**53 - 1)],
) -> ProfilePublic:
    """A new version with the settings of `version` (history is never rewritten), applied
    like a PUT. 404 when the profile has no such version."""
    change = service.rollback(store, signer, kind, scope, version, caller, now_ms)
    return public(store, kind, scope, change.configs)


@router.get("/api/v1/drift", response_model=list[DriftPublic], dependencies=READ)
def get_drift(
    store: DbDep, now_ms: NowDep,
    intervals: Annotated[int, Query(ge=1, le=1000)] = drift_service.OFFLINE_INTERVALS,
) -> list[DriftPublic]:
    """Devices whose reported config is not their desired one, with why: rejected (the
    device's reason), offline (not heard from for `intervals` heartbeat intervals), or not
    yet applied (online, not applied yet). The same rules as the dashboard's (docs:
    operations, "Online and drift")."""
    return [
        DriftPublic(device=d.device, desired_version=d.desired_version or 0,
                    reported_version=d.reported_version,
                    status=d.status,  # type: ignore[arg-type]
                    reason=d.reason, last_heard_ms=d.last_heard_ms, online=d.online)
        for d in drift_service.drift(store, now_ms, intervals)
    ]
