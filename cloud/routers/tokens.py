"""API tokens (admin only): create (the token is answered once), list (never a hash), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep
from cloud.openapi import errors
from cloud.schemas import TokenCreate, TokenIssued, TokenPublic
from cloud.services import tokens as service
from cloud.store import TokenRow

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])
Admin = Annotated[Principal, Depends(requires(Role.ADMIN))]
TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def public(row: TokenRow) -> TokenPublic:
    return TokenPublic(
        id=row.id, name=row.name, role=row.role, customer=row.customer, created_ms=row.created_ms,
        created_by=row.created_by, expires_ms=row.expires_ms, revoked_ms=row.revoked_ms,
        last_used_ms=row.last_used_ms,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenIssued,
             responses=errors(400), openapi_extra={"x-audit-action": "token.create"})
def create_token(body: TokenCreate, caller: Admin, store: DbDep, now_ms: NowDep) -> TokenIssued:
    """Create an API token with a role (and, for role customer, its customer) that expires
    after `expires_days` (default 90). The token is in this answer only: the cloud keeps its
    SHA-256. 400 a customer token without a customer, or a customer on another role."""
    issued = service.create(store, caller, body.name, body.role, now_ms,
                            customer=body.customer, expires_days=body.expires_days)
    return TokenIssued(**public(issued.row).model_dump(), token=issued.token)


@router.get("", response_model=list[TokenPublic])
def list_tokens(_: Admin, store: DbDep) -> list[TokenPublic]:
    """Every API token, oldest first, with its role, expiry, revocation and last use (never
    the token or its hash). Gateway tokens are listed with the gateways."""
    return [public(row) for row in service.list_tokens(store)]


@router.delete("/{token_id}", response_model=TokenPublic,
               openapi_extra={"x-audit-action": "token.revoke"})
def revoke_token(token_id: TokenId, caller: Admin, store: DbDep, now_ms: NowDep) -> TokenPublic:
    """Revoke a token: it is refused from now on (401 "token revoked"), and so are the
    dashboard sessions signed in with it. Revoking it again changes nothing. 404 unknown id."""
    return public(service.revoke(store, caller, token_id, now_ms))
