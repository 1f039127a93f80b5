from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cloud.access import Role, requires
from cloud.deps import DbDep
from cloud.schemas import QuarantinePublic
from cloud.services import quarantine as service
from cloud.store import QuarantineRow

router = APIRouter(tags=["quarantine"], dependencies=[Depends(requires(Role.OPS, Role.TECHNICIAN))])

Limit = Annotated[int, Query(ge=1, le=service.MAX_PAGE)]


def public(row: QuarantineRow) -> QuarantinePublic:
    return QuarantinePublic(
        id=row.id, device=row.device, seq=row.seq, kind=row.kind, reason=row.reason,
        gateway=row.gateway, batch_seq=row.batch_seq, received_ms=row.received_ms, body=row.body,
    )


@router.get("/api/v1/quarantine", response_model=list[QuarantinePublic])
def fleet_quarantine(store: DbDep, limit: Limit = 100) -> list[QuarantinePublic]:
    """The newest quarantined records and states of the whole fleet, with their reasons
    (also those whose device id is invalid, which no device page shows)."""
    return [public(row) for row in service.page(store, None, limit)]
