from __future__ import annotations

from fastapi import APIRouter, Depends, status

from cloud.deps import DbDep, NowDep, require_admin
from cloud.schemas import GatewayCreate, GatewayRegistered
from cloud.services import gateways as service

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"], dependencies=[Depends(require_admin)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=GatewayRegistered)
def register_gateway(body: GatewayCreate, store: DbDep, now_ms: NowDep) -> GatewayRegistered:
    """Register a gateway's Ed25519 batch key; returns its bearer token (shown only now).

    Registering the same id with the same key again issues a new token and revokes the old
    one; a different key for an existing id is refused with 409.
    """
    reg = service.register(store, body.id, body.public_key_bytes(), now_ms)
    return GatewayRegistered(id=reg.gateway.id, token=reg.token)
