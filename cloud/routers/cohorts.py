from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, Field

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep
from cloud.errors import Conflict, InvalidRequest
from cloud.fleet_schemas import CohortCreate, CohortMembers, CohortPublic, CohortPut
from cloud.openapi import errors
from cloud.routers.series import BucketPublic, FromMs, Points, ToMs
from cloud.services import cohorts as service
from cloud.services import series as series_service
from cloud.store import CohortRow

router = APIRouter(prefix="/api/v1/cohorts", tags=["cohorts"])
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN, Role.ANALYST))]
DATA = [Depends(requires(Role.OPS, Role.ANALYST))]
MAX_SERIES_DEVICES = 1000
Ops = Annotated[Principal, Depends(requires(Role.OPS))]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


def public(row: CohortRow) -> CohortPublic:
    return CohortPublic(
        name=row.name, kind=row.kind,  # type: ignore[arg-type]  # checked on the way in
        rule=row.spec if row.kind == service.RULE else None,
        devices=row.spec.get("devices") if row.kind == service.LIST else None,
        priority=row.priority, created_ms=row.created_ms, updated_ms=row.updated_ms,
    )


@router.get("", response_model=list[CohortPublic], dependencies=READ)
def list_cohorts(store: DbDep) -> list[CohortPublic]:
    """Every cohort, by name."""
    return [public(row) for row in store.list_cohorts()]


@router.put("/{name}", response_model=CohortPublic,
            responses={201: {"model": CohortPublic, "description": "created"}},
            openapi_extra={"x-audit-action": "cohort.put"})
def put_cohort(
    name: Name, body: CohortPut, store: DbDep, now_ms: NowDep, response: Response, caller: Ops
) -> CohortPublic:
    """Create or replace a cohort: by `rule` (keys product, customer, hw_rev, firmware,
    gateway, consent; each one value or a list; all keys must match) or by `devices` (a list
    of registered device ids). 201 created, 200 replaced; 400 neither or both; 422 an unknown
    device in the list. Profiles of the cohort are not re-applied by a change of its members:
    the next profile change resolves them."""
    row, created = service.put(
        store, caller, name, rule=None if body.rule is None else body.rule.given(),
        devices=body.devices, priority=body.priority, now_ms=now_ms)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return public(row)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CohortPublic,
             openapi_extra={"x-audit-action": "cohort.put"})
def post_cohort(body: CohortCreate, store: DbDep, now_ms: NowDep, caller: Ops) -> CohortPublic:
    """Create a cohort named `name` (as PUT /{name}); 409 when one has that name."""
    if store.get_cohort(body.name) is not None:
        raise Conflict(f"cohort {body.name} exists; PUT /api/v1/cohorts/{body.name} replaces it")
    row, _ = service.put(
        store, caller, body.name, rule=None if body.rule is None else body.rule.given(),
        devices=body.devices, priority=body.priority, now_ms=now_ms)
    return public(row)


@router.get("/{name}", response_model=CohortPublic, dependencies=READ)
def get_cohort(name: Name, store: DbDep) -> CohortPublic:
    """One cohort; 404 unknown."""
    return public(service.get(store, name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT,
               openapi_extra={"x-audit-action": "cohort.delete"})
def delete_cohort(name: Name, store: DbDep, now_ms: NowDep, caller: Ops) -> Response:
    """Delete the cohort (its profile history stays); 404 unknown."""
    service.delete(store, caller, name, now_ms)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/devices", response_model=CohortMembers, dependencies=READ)
def get_members(name: Name, store: DbDep) -> CohortMembers:
    """The cohort's active members, sorted."""
    return CohortMembers(name=name, devices=service.members(store, name))


class CohortSeries(BaseModel):
    cohort: str
    devices: int = Field(description="active members whose series were merged")
    name: str = Field(description="the metric")
    unit: str
    from_ms: int
    to_ms: int
    bucket_ms: int
    count: int = Field(description="values in the range, over all members")
    buckets: list[BucketPublic] = Field(
        description="non-empty buckets, oldest first: the smallest min, largest max and the"
        " mean over every member's values in the bucket")


@router.get("/{name}/series", response_model=CohortSeries, dependencies=DATA,
            responses=errors(400))
def get_cohort_series(
    name: Name, store: DbDep,
    metric: Annotated[str, Query(min_length=1, max_length=32, pattern="^[a-z0-9_]+$")],
    from_ms: FromMs, to_ms: ToMs, points: Points = series_service.DEFAULT_POINTS,
) -> CohortSeries:
    """One `metric` over the cohort's active members, [from_ms, to_ms) on record time,
    downsampled on the server to at most `points` buckets (as the device series), the
    members' buckets merged. At most 1000 members are merged (400 for a larger cohort:
    split it). 404 unknown cohort; 400 a range the series refuse."""
    window = series_service.Window(from_ms, to_ms, points)
    members = service.members(store, name)
    if len(members) > MAX_SERIES_DEVICES:
        raise InvalidRequest(f"cohort {name} has {len(members)} members; a series merges at"
                             f" most {MAX_SERIES_DEVICES}")
    s = series_service.cohort_series(store, members, metric, window)
    return CohortSeries(
        cohort=name, devices=len(members), name=s.name, unit=s.unit, from_ms=window.from_ms,
        to_ms=window.to_ms, bucket_ms=window.bucket_ms, count=s.count,
        buckets=[BucketPublic(t=b.start_ms, count=b.count, min=b.min, max=b.max, mean=b.mean)
                 for b in s.buckets],
    )
