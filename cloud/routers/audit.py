"""The audit log (roles ops and admin): every change, and every refused write of a known caller."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cloud.access import Role, requires
from cloud.deps import DbDep
from cloud.schemas import AuditEntry
from cloud.services import audit as service
from cloud.store import AuditRow

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Text = Annotated[str | None, Query(max_length=200)]


def _value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:  # cut short by the bound: shown as the text it is
        return text


def public(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id, at_ms=row.at_ms, actor=row.actor, role=row.role, token_id=row.token_id,
        action=row.action, target=row.target, before=_value(row.before), after=_value(row.after),
        outcome="refused" if row.outcome == service.REFUSED else "ok", reason=row.reason,
    )


@router.get("", response_model=list[AuditEntry], dependencies=[Depends(requires(Role.OPS))])
def list_audit(
    store: DbDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    actor: Text = None,
    action: Text = None,
    target: Text = None,
) -> list[AuditEntry]:
    """The audit log, newest first: who (actor, role, token), what (action, target, small
    before/after), when, and whether it was done or refused (with the reason). Page on with
    the last entry's id as `before`; filter by exact actor, action (e.g. `config.put`) or
    target (e.g. `device:bike-1`)."""
    return [public(row) for row in service.page(store, limit, before, actor, action, target)]
