"""The customer's own view: their products, their data, their consent, cancelling.

Scoping: a customer-role caller sees only devices of their customer (`scope`: that
customer's id; the routers derive it from access.Principal); any other device id is "not
found" (404, the same as an id that does not exist, so ids of other customers' products do
not leak). Staff and admin callers are not scoped (scope None).

Cancel: every product of the customer drops to `essential` through the consent path
(cloud.services.consent.narrow: a signed config carrying the narrowing, personal data
deleted, audited); the customer is marked cancelled first, so no profile change makes a
proposal to them afterwards (cloud.services.profiles). The products keep working. Calling it
again narrows any product that was not narrowed yet (e.g. when the signing key was missing).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cloud.errors import InvalidRequest, NotFound
from cloud.services import audit, telemetry
from cloud.services import consent as consent_service
from cloud.services.audit import Actor
from cloud.services.config import ConfigSigner
from cloud.store import CustomerRow, DeviceRow, Store, TelemetryRow

CANCELLED_BY = "customer cancelled"
ESSENTIAL = "essential"


def own_device(store: Store, scope: str | None, device_id: str) -> DeviceRow:
    """The device, when a caller of `scope` may see it; NotFound otherwise."""
    device = store.get_device(device_id)
    if device is None or not sees(store, scope, device_id):
        raise NotFound(f"device {device_id} not found")
    return device


def sees(store: Store, scope: str | None, device_id: str) -> bool:
    if scope is None:
        return True
    reg = store.registry(device_id)
    return reg is not None and reg.customer == scope


def devices(store: Store, customer: str | None) -> list[DeviceRow]:
    """The customer's devices (none for a caller that is no customer's)."""
    if customer is None:
        return []
    ids = {r.device for r in store.registries(customer)}
    return [d for d in store.list_devices() if d.id in ids]


@dataclass(frozen=True)
class ExportPage:
    rows: list[TelemetryRow]
    next: tuple[int, int] | None  # (incarnation, seq) to continue after; None: the end


def export(
    store: Store, device_id: str, after_incarnation: int | None, after_seq: int, limit: int
) -> ExportPage:
    """One bounded page of the device's records (telemetry.page), and the cursor after it."""
    rows = telemetry.page(store, device_id, after_incarnation, after_seq, limit)
    more = len(rows) == limit
    return ExportPage(rows, (rows[-1].incarnation, rows[-1].seq) if rows and more else None)


def export_chunks(page: ExportPage, fmt: str) -> Iterator[str]:
    """The page as JSON (one object) or CSV (incarnation, seq, t, then one column per metric
    name on the page, sorted), a few rows per chunk."""
    import csv
    import io
    import json

    if fmt == "json":
        yield '{"records":['
        for n, r in enumerate(page.rows):
            obj = {"incarnation": r.incarnation, "seq": r.seq, "t": r.t, "m": r.m}
            if r.consent is not None:
                obj["consent"] = r.consent
            yield ("," if n else "") + json.dumps(obj, separators=(",", ":"), sort_keys=True)
        nxt = None if page.next is None else {"after_incarnation": page.next[0],
                                              "after_seq": page.next[1]}
        yield '],"next":' + json.dumps(nxt) + "}"
        return
    names = sorted({k for r in page.rows for k in r.m})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["incarnation", "seq", "t", *names])
    for n, r in enumerate(page.rows):
        writer.writerow([r.incarnation, r.seq, r.t, *[_cell(r.m.get(k)) for k in names]])
        if n % 500 == 499:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    # A cell a spreadsheet would run as a formula is quoted as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def cancel(
    store: Store, signer: ConfigSigner, caller: Actor, customer_id: str | None, now_ms: int
) -> tuple[CustomerRow, list[DeviceRow]]:
    """Cancel the customer's account (see the module doc); InvalidRequest for a caller that
    is no customer's."""
    if customer_id is None:
        raise InvalidRequest("this token belongs to no customer account")
    with store.transaction():
        row = store.get_customer(customer_id)
        if row is None:
            raise NotFound(f"customer {customer_id} not found")
        if row.cancelled_ms is None:
            store.set_customer_cancelled(customer_id, now_ms)
            audit.record(store, caller, "customer.cancel", f"customer:{customer_id}", now_ms,
                         before={"cancelled": False},
                         after={"cancelled": True, "consent": ESSENTIAL,
                                "devices": sorted(r.device for r in
                                                  store.registries(customer_id))})
    narrowed = [
        consent_service.narrow(store, signer, reg.device, ESSENTIAL, now_ms,
                               requested_by=CANCELLED_BY)
        for reg in store.registries(customer_id)
    ]
    fresh = store.get_customer(customer_id)
    return (fresh or row), narrowed
