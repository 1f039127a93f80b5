"""The customer's own endpoints: their products, their data, cancelling."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep, SignerDep
from cloud.fleet_schemas import CancelResult
from cloud.openapi import errors
from cloud.routers.devices import public_one, scope_of
from cloud.schemas import DevicePublic
from cloud.services import customers as service
from cloud.services.telemetry import MAX_PAGE
from protocol.record import MAX_INCARNATION

router = APIRouter(prefix="/api/v1/me", tags=["customer"])
# The caller's own account: customer tokens only (admin has no products of its own).
Customer = Annotated[Principal, Depends(requires(Role.CUSTOMER, admin=False))]
EXPORT_PAGE = 1000


@router.get("/devices", response_model=list[DevicePublic])
def my_devices(caller: Customer, store: DbDep) -> list[DevicePublic]:
    """The caller's products (a token that is no customer's has none)."""
    return [public_one(store, d) for d in service.devices(store, caller.customer)]


@router.get(
    "/devices/{device_id}/export",
    responses={200: {"content": {"application/json": {}, "text/csv": {}},
                     "description": "one page of records; the next page's cursor is in"
                     " `next` (JSON) or the Link header (both formats)"}},
)
def export(
    device_id: str, caller: Customer, store: DbDep,
    format: Literal["json", "csv"] = "json",
    after_incarnation: Annotated[int | None, Query(ge=0, le=MAX_INCARNATION)] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = EXPORT_PAGE,
) -> StreamingResponse:
    """The device's records (their data as stored: what their consent allowed), oldest
    first, one bounded page per request, streamed. Page on with the cursor of the answer:
    `next` in JSON, `Link: <...>; rel="next"` in both formats; no cursor: the end. 404 for a
    device that is not the caller's."""
    device = service.own_device(store, scope_of(caller), device_id)
    page = service.export(store, device.id, after_incarnation, after_seq, limit)
    headers = {}
    if page.next is not None:
        url = (f"/api/v1/me/devices/{device.id}/export?format={format}&limit={limit}"
               f"&after_incarnation={page.next[0]}&after_seq={page.next[1]}")
        headers["Link"] = f'<{url}>; rel="next"'
    media = "application/json" if format == "json" else "text/csv; charset=utf-8"
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{device.id}.csv"'
    return StreamingResponse(service.export_chunks(page, format), media_type=media,
                             headers=headers)


@router.post("/cancel", response_model=CancelResult, responses=errors(400, 404),
             openapi_extra={"x-audit-action": "customer.cancel"})
def cancel(caller: Customer, store: DbDep, signer: SignerDep, now_ms: NowDep) -> CancelResult:
    """Cancel the caller's account: every product drops to consent tier `essential`
    (personal and usage data deleted, audited, a signed config tells each product), and no
    more proposals (profile changes) reach them; the products keep working. Idempotent. 400
    for a token that is no customer's; 404 a customer account that no longer exists; 503 when the config-signing key is missing."""
    row, devices = service.cancel(store, signer, caller, caller.customer, now_ms)
    return CancelResult(customer=row.id, cancelled_ms=row.cancelled_ms,
                        devices=[d.id for d in devices])
