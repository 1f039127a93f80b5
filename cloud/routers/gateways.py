from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, GatewayOr404, NowDep
from cloud.openapi import errors
from cloud.schemas import GapPublic, GatewayCreate, GatewayPublic, GatewayRegistered
from cloud.services import audit
from cloud.services import gaps as gap_service
from cloud.services import gateways as service
from cloud.store import BatchRow

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN))]


def gap_public(row: BatchRow) -> GapPublic:
    return GapPublic(
        seq=row.seq, digest=row.digest, records=row.records, states=row.states,
        status=row.gap_status or 0, reason=row.gap_reason or "", created_ms=row.created_ms,
        received_ms=row.received_ms,
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=GatewayRegistered,
    responses=errors(409), openapi_extra={"x-audit-action": "gateway.register"},
)
def register_gateway(
    body: GatewayCreate, store: DbDep, now_ms: NowDep,
    caller: Annotated[Principal, Depends(requires(Role.OPS))],
) -> GatewayRegistered:
    """Register a gateway's Ed25519 batch key; returns its bearer token (shown only now).

    Registering the same id with the same key again issues a new token and revokes the old
    one; a different key for an existing id is refused with 409.
    """
    reg = service.register(store, body.id, body.public_key_bytes(), now_ms)
    audit.record_now(store, caller, "gateway.register", f"gateway:{reg.gateway.id}", now_ms,
                     after={"created": reg.created, "public_key": body.public_key})
    return GatewayRegistered(id=reg.gateway.id, token=reg.token)


@router.get("", response_model=list[GatewayPublic], dependencies=READ)
def list_gateways(store: DbDep) -> list[GatewayPublic]:
    """Every gateway with its chain head, its number of gaps and the newest gaps' reasons."""
    return [
        GatewayPublic(
            id=s.gateway.id, created_ms=s.gateway.created_ms, last_seq=s.gateway.last_seq,
            last_batch_ms=s.gateway.last_batch_ms, gaps=s.gaps,
            latest_gaps=[gap_public(g) for g in s.latest_gaps],
        )
        for s in service.statuses(store)
    ]


@router.get("/{gateway_id}/gaps", response_model=list[GapPublic], dependencies=READ)
def list_gaps(
    gateway: GatewayOr404,
    store: DbDep,
    limit: Annotated[int, Query(ge=1, le=gap_service.MAX_PAGE)] = 100,
) -> list[GapPublic]:
    """The gateway's gaps (refused batches it replaced by a signed gap), newest first."""
    return [gap_public(g) for g in gap_service.latest(store, gateway.id, limit)]
