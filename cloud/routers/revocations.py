from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep, raw_body
from cloud.fleet_schemas import CrlInfo, Revocation
from cloud.openapi import errors
from cloud.services import revocation as service

router = APIRouter(tags=["revocation"])
CRL_TYPE = "application/pkix-crl"


@router.get("/api/v1/revocations", response_model=list[Revocation],
            dependencies=[Depends(requires(Role.OPS, Role.FACTORY, Role.GATEWAY))])
def list_revocations(store: DbDep) -> list[Revocation]:
    """Revoked devices with their certificate's serial and fingerprint: what the factory
    signs into the device CA's CRL, and what a gateway drops before the CRL arrives."""
    return [Revocation(device=r.device, cert_serial=r.cert_serial,
                       cert_fingerprint=r.cert_fingerprint, revoked_ms=r.status_ms,
                       reason=r.status_reason)
            for r in service.revoked(store)]


@router.put("/api/v1/revocations/crl", response_model=CrlInfo,
            openapi_extra={"x-audit-action": "crl.upload", "requestBody": {"required": True, "content": {
                CRL_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
async def put_crl(
    request: Request, caller: Annotated[Principal, Depends(requires(Role.FACTORY))],
    store: DbDep, now_ms: NowDep,
) -> CrlInfo:
    """Upload the device CA's CRL (DER), signed by the factory (`fleetloop fw crl`). 400 not
    a CRL or no CRL number; 409 not newer than the stored one, or a revoked device's serial
    missing; 413 over 1 MiB."""
    der = await raw_body(request, "CRL", service.MAX_CRL_BYTES)
    row = service.upload(store, caller, der, now_ms)
    return CrlInfo(number=row.number, created_ms=row.created_ms, bytes=len(row.der))


@router.get("/api/v1/gateway/crl",
            responses={200: {"content": {CRL_TYPE: {}}, "description": "the CRL, DER"},
                       **errors(404)},
            dependencies=[Depends(requires(Role.GATEWAY, Role.OPS, Role.FACTORY))])
def get_crl(store: DbDep) -> Response:
    """The newest CRL of the device CA (DER, as the factory signed it; verify it against the
    device CA certificate before use); 404 before the first upload."""
    row = service.latest(store)
    return Response(row.der, media_type=CRL_TYPE,
                    headers={"X-Fleetloop-Crl-Number": str(row.number)})
