"""The audit log: every change the API makes, and every write it refused to a caller it knew.

One function for everyone who changes something:

    audit.record(store, caller, "config.put", f"device:{device_id}", now_ms,
                 before={"settings": old}, after={"settings": new})

- `caller` is the request's `cloud.access.Principal` (anything with `name`, `role` and
  `token_id`: `Actor` for the offline CLI);
- `action` is `<thing>.<verb>` (token.create, token.revoke, config.put, consent.narrow,
  device.create, device.enrol, device.assign, gateway.register, ...);
- `target` is `<kind>:<id>` (device:bike-1, gateway:gw-1, token:3);
- `before` / `after` are small JSON values: keys that name secrets (token, record_key,
  public keys are fine) are dropped and the text is cut to MAX_VALUE characters;
- call it inside the transaction that makes the change (it writes, and nothing writes
  outside a transaction), so the change and its entry commit together or not at all.

Refused writes (a 4xx to POST/PUT/DELETE by an authenticated caller) are recorded by the app
itself (cloud.main) with outcome "refused" and the reason sent; unauthenticated refusals are
not recorded, so a caller without a token cannot fill the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from cloud.services.text import safe_text
from cloud.store import AuditRow, Store

OK = "ok"
REFUSED = "refused"
MAX_VALUE = 2048  # characters of before/after JSON kept
MAX_REASON = 512
MAX_PAGE = 1000
# Keys never written to the log, at any depth (their values are secrets).
SECRET_KEYS = frozenset({"token", "record_key", "csrf", "password", "secret", "session"})
TRUNCATED = "…(truncated)"


class Actor(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def token_id(self) -> int | None: ...


@dataclass(frozen=True)
class Offline:
    """Whoever runs the CLI against the database itself (the server's operator)."""

    name: str = "offline"
    role: str = "admin"
    token_id: int | None = None


def scrub(value: Any) -> Any:
    """`value` without the secret-named keys, at any depth."""
    if isinstance(value, dict):
        return {str(k): scrub(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def bounded(value: Any) -> str | None:
    """`value` as JSON text without secrets, cut to MAX_VALUE characters; None stays None."""
    if value is None:
        return None
    text = json.dumps(scrub(value), sort_keys=True, separators=(",", ":"), default=str)
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - len(TRUNCATED)] + TRUNCATED
    return text


def record(
    store: Store, who: Actor, action: str, target: str, now_ms: int, *,
    before: Any = None, after: Any = None, outcome: str = OK, reason: str = "",
) -> int:
    """Write one entry inside the caller's transaction; returns its id."""
    return store.insert_audit(AuditRow(
        at_ms=now_ms, actor=text(who.name), role=str(who.role), token_id=who.token_id,
        action=text(action), target=text(target), before=bounded(before),
        after=bounded(after), outcome=outcome, reason=text(reason[:MAX_REASON]),
    ))


def text(value: str) -> str:
    """`value` storable as text on every backend (a refused write's reason or a path
    parameter may carry a NUL or a lone surrogate): cloud.services.text.safe_text."""
    return safe_text(value)


def record_now(
    store: Store, who: Actor, action: str, target: str, now_ms: int, **fields: Any
) -> int:
    """`record` in a transaction of its own (for a change already committed, or a refusal)."""
    with store.transaction():
        return record(store, who, action, target, now_ms, **fields)


def page(
    store: Store, limit: int = 100, before: int | None = None, actor: str | None = None,
    action: str | None = None, target: str | None = None, outcome: str | None = None,
) -> list[AuditRow]:
    """Newest first; page on with the last entry's id as `before`."""
    return store.audit_entries(min(limit, MAX_PAGE), before, actor, action, target, outcome)
