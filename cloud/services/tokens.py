"""API tokens: random, shown once, stored as their SHA-256, with a role, an expiry and a revocation.

A token is `flt_` followed by 43 characters of URL-safe base64 (32 random bytes from
`secrets`): the prefix makes a leaked one recognisable (in a log, a paste, a secret scanner).
The cloud keeps its SHA-256 only, so a copy of the database holds no usable token. A token
is refused once expired or revoked, each with its own reason. `last_used_ms` is written at
most once a minute per token, not on every request.

Gateway tokens are not made here: a gateway gets its token when it registers its key
(cloud.services.gateways), because a gateway principal is bound to its chain.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace

from cloud.errors import InvalidRequest, NotFound, Unauthorized, UnknownReference
from cloud.services import audit
from cloud.store import Store, TokenRow

PREFIX = "flt_"
TOKEN_BYTES = 32
DAY_MS = 86_400_000
DEFAULT_EXPIRES_DAYS = 90
MAX_EXPIRES_DAYS = 3650
TOUCH_EVERY_MS = 60_000
MAX_NAME = 64

# Roles a token may carry (cloud.access.Role, without gateway); kept as strings so this
# module does not import the HTTP layer.
TOKEN_ROLES = ("ops", "technician", "analyst", "factory", "admin", "customer")


@dataclass(frozen=True)
class Issued:
    row: TokenRow
    token: str  # shown once, never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def check(name: str, role: str, customer: str | None, expires_days: int) -> None:
    """InvalidRequest for a request no token can be made from."""
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidRequest(f"name must be 1-{MAX_NAME} printable characters")
    if role not in TOKEN_ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(TOKEN_ROLES)}")
    if role == "customer" and not customer:
        raise InvalidRequest("a customer token needs its customer id")
    if role != "customer" and customer is not None:
        raise InvalidRequest("only a customer token names a customer")
    if not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        raise InvalidRequest(f"expires_days must be 1..{MAX_EXPIRES_DAYS}")


def create(
    store: Store, who: audit.Actor, name: str, role: str, now_ms: int, *,
    customer: str | None = None, expires_days: int = DEFAULT_EXPIRES_DAYS,
) -> Issued:
    """Make a token, store its hash and audit it in one transaction; the token is in the
    result only."""
    check(name, role, customer, expires_days)
    token = new_token()
    row = TokenRow(id=0, name=name, role=role, customer=customer, created_ms=now_ms,
                   created_by=who.name, expires_ms=now_ms + expires_days * DAY_MS)
    with store.transaction():
        if customer is not None and store.get_customer(customer) is None:
            raise UnknownReference(f"customer {customer} not found (create it first)")
        token_id = store.insert_token(row, hash_token(token))
        row = replace(row, id=token_id)
        audit.record(store, who, "token.create", f"token:{token_id}", now_ms,
                     after={"name": name, "role": role, "customer": customer,
                            "expires_ms": row.expires_ms})
    return Issued(row, token)


def revoke(store: Store, who: audit.Actor, token_id: int, now_ms: int) -> TokenRow:
    """Revoke a token (NotFound: no such token). Revoking a revoked token changes nothing."""
    with store.transaction():
        row = store.get_token(token_id)
        if row is None:
            raise NotFound(f"token {token_id} not found")
        if row.revoked_ms is not None:
            return row
        store.revoke_token(token_id, now_ms)
        audit.record(store, who, "token.revoke", f"token:{token_id}", now_ms,
                     before={"name": row.name, "role": row.role}, after={"revoked": True})
    return replace(row, revoked_ms=now_ms)


def list_tokens(store: Store) -> list[TokenRow]:
    return store.list_tokens()


def is_api_token(token: str) -> bool:
    """Whether the text has an API token's form (issued by issue(), `flt_...`)."""
    return token.startswith(PREFIX)


def authenticate(store: Store, token: str, now_ms: int) -> TokenRow | None:
    """The live token row for `token`; None when nobody issued it. Unauthorized with "token
    expired" or "token revoked" for one that was issued but no longer counts."""
    if not is_api_token(token):
        return None
    row = store.token_by_hash(hash_token(token))
    if row is None:
        return None
    if row.revoked_ms is not None:
        raise Unauthorized("token revoked")
    if now_ms >= row.expires_ms:
        raise Unauthorized("token expired")
    if row.last_used_ms is None or now_ms - row.last_used_ms >= TOUCH_EVERY_MS:
        with store.transaction():
            store.touch_token(row.id, now_ms)
    return row


def live(row: TokenRow | None, now_ms: int) -> bool:
    """The token exists, is not revoked and has not expired."""
    return row is not None and row.revoked_ms is None and now_ms < row.expires_ms
