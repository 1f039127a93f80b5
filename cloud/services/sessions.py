"""Dashboard sessions: sign in once with a token, then an HttpOnly, SameSite=Strict cookie.

The cookie carries a random session id (32 bytes from `secrets`); the cloud keeps its
SHA-256 only, with who signed in (the token's id, role and name), when it expires and the
session's CSRF secret. Every form of the session carries that secret and every POST is
checked against it (a synchronizer token). A session dies with its token: a revoked or
expired token ends its sessions at their next request. The login form itself, before any
session exists, is protected by a double-submit cookie (`LOGIN_CSRF_COOKIE`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cloud.store import SessionRow, Store

COOKIE = "fleetloop_session"
LOGIN_CSRF_COOKIE = "fleetloop_login_csrf"
CSRF_FIELD = "csrf"
LIFETIME_MS = 12 * 3600 * 1000
ID_BYTES = 32


@dataclass(frozen=True)
class Started:
    row: SessionRow
    session_id: str  # goes into the cookie only, never stored


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def start(
    store: Store, token_id: int | None, role: str, name: str, now_ms: int
) -> Started:
    """A new session for the signed-in principal (and expired ones cleared away)."""
    session_id = new_secret()
    row = SessionRow(id_hash=hash_id(session_id), token_id=token_id, role=role, name=name,
                     created_ms=now_ms, expires_ms=now_ms + LIFETIME_MS, csrf=new_secret())
    with store.transaction():
        store.delete_sessions_before(now_ms)
        store.insert_session(row)
    return Started(row, session_id)


def find(store: Store, session_id: str | None, now_ms: int) -> SessionRow | None:
    """The live session for a cookie value; None when unknown, expired or its token is no
    longer valid."""
    if not session_id:
        return None
    row = store.session_by_hash(hash_id(session_id))
    if row is None or now_ms >= row.expires_ms:
        return None
    if row.token_id is not None:
        token = store.get_token(row.token_id)
        if token is None or token.revoked_ms is not None or now_ms >= token.expires_ms:
            return None
    return row


def end(store: Store, session_id: str | None) -> None:
    if session_id:
        with store.transaction():
            store.delete_session(hash_id(session_id))


def same(expected: str | None, given: str | None) -> bool:
    """Constant-time equality of two CSRF values, both present and non-empty."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
