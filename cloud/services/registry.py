"""The fleet registry: what the factory enrols, the customers that own products, and each
device's life: active -> decommissioned -> revoked.

- Enrolment (POST /api/v1/devices, the factory's `fw provision --cloud`) registers a device's
  product and record key (cloud.services.telemetry) and, in the same transaction, what only
  the factory knows: hardware revision, the sha256 fingerprint and serial of its device
  certificate, and the customer it was sold to. A field left out keeps its stored value;
  `enrolled_ms` is the first enrolment. A device that is no longer active cannot be enrolled
  again (409): a revoked identity must not come back through the factory's door.
- Customers are accounts (id, name); a device belongs to at most one. Cancelling is
  cloud.services.customers.cancel.
- Decommission (taken out of service, e.g. returned) and revoke (its identity is not to be
  trusted any more: stolen, cloned, key leaked) both stop the cloud from accepting the
  device's data: its records and states are quarantined with the reason "device
  decommissioned" / "device revoked" (cloud.services.ingest), counted, never stored. Revoked
  is final; a revoked device's certificate goes on the device CA's CRL
  (cloud.services.revocation) so the gateways' brokers refuse it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from cloud.errors import Conflict, NotFound, UnknownReference
from cloud.services import audit, telemetry
from cloud.services.audit import Actor
from cloud.store import CustomerRow, DeviceRow, RegistryRow, Store

ACTIVE = "active"
DECOMMISSIONED = "decommissioned"
REVOKED = "revoked"
STATUSES = (ACTIVE, DECOMMISSIONED, REVOKED)
MAX_REASON = 500
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
SERIAL = re.compile(r"^[0-9a-f]{1,40}$")


def refused_reason(status: str) -> str:
    """The quarantine reason for an item of a device with this (not active) status."""
    return f"device {status}"


def _facts(product: str | None, keyed: bool, row: RegistryRow | None) -> dict[str, object]:
    """What an enrolment audit entry shows of a device (never its key, only whether it has one)."""
    out: dict[str, object] = {"product": product, "record_key_registered": keyed}
    if row is not None:
        for name in ("customer", "hw_rev", "cert_fingerprint", "cert_serial"):
            if getattr(row, name) is not None:
                out[name] = getattr(row, name)
    return out


def enrol(
    store: Store, caller: Actor, device_id: str, product: str, now_ms: int, *,
    record_key: bytes | None = None,
    customer: str | None = None, hw_rev: str | None = None,
    cert_fingerprint: str | None = None, cert_serial: str | None = None,
) -> tuple[DeviceRow, RegistryRow, bool]:
    """Register (or update) a device and what the factory knows of it, in one transaction.
    Returns (device, registry row, created). UnknownReference for a customer that does not
    exist; Conflict for a device that is not active, or a record key other than its own.
    Audited as device.create (new) or device.enrol (anything changed)."""
    with store.transaction():
        if customer is not None and store.get_customer(customer) is None:
            raise UnknownReference(f"customer {customer} not found")
        known = store.registry(device_id)
        if known is not None and known.status != ACTIVE:
            raise Conflict(f"device {device_id} is {known.status}; it cannot be enrolled again")
        old = store.get_device(device_id)
        before = None if old is None else _facts(
            old.product, store.record_key(device_id) is not None, known)
        device, created = telemetry.upsert_device(store, device_id, product, now_ms, record_key)
        row = store.registry(device_id) or RegistryRow(device=device_id)
        row = replace(
            row,
            customer=customer if customer is not None else row.customer,
            hw_rev=hw_rev if hw_rev is not None else row.hw_rev,
            cert_fingerprint=cert_fingerprint if cert_fingerprint is not None
            else row.cert_fingerprint,
            cert_serial=cert_serial if cert_serial is not None else row.cert_serial,
            enrolled_ms=row.enrolled_ms if row.enrolled_ms is not None else now_ms,
        )
        store.set_registry(row)
        after = _facts(device.product, store.record_key(device_id) is not None, row)
        if created or after != before:
            audit.record(store, caller, "device.create" if created else "device.enrol",
                         f"device:{device_id}", now_ms, before=before, after=after)
    return device, replace(row, product=product), created


def get(store: Store, device_id: str) -> RegistryRow:
    row = store.registry(device_id)
    if row is None:
        raise NotFound(f"device {device_id} not found")
    return row


def set_customer(
    store: Store, caller: Actor, device_id: str, customer: str | None, now_ms: int
) -> RegistryRow:
    """Assign the device to a customer (None: to nobody). NotFound for an unknown device,
    UnknownReference for an unknown customer."""
    with store.transaction():
        row = get(store, device_id)
        if customer is not None and store.get_customer(customer) is None:
            raise UnknownReference(f"customer {customer} not found")
        new = replace(row, customer=customer)
        store.set_registry(new)
        if row.customer != customer:
            audit.record(store, caller, "device.customer", f"device:{device_id}", now_ms,
                         before={"customer": row.customer}, after={"customer": customer})
    return new


def set_status(
    store: Store, caller: Actor, device_id: str, status: str, reason: str, now_ms: int
) -> RegistryRow:
    """Decommission or revoke the device. The same status again changes nothing; revoked is
    final (Conflict for anything else after it)."""
    if status not in (DECOMMISSIONED, REVOKED):
        raise ValueError(f"unknown status {status!r}")
    with store.transaction():
        row = get(store, device_id)
        if row.status == status:
            return row
        if row.status == REVOKED:
            raise Conflict(f"device {device_id} is revoked; that is final")
        new = replace(row, status=status, status_ms=now_ms, status_reason=reason[:MAX_REASON])
        store.set_registry(new)
        audit.record(store, caller, f"device.{status}", f"device:{device_id}", now_ms,
                     before={"status": row.status},
                     after={"status": status, "reason": new.status_reason})
    return new


def create_customer(
    store: Store, caller: Actor, customer_id: str, name: str, now_ms: int
) -> tuple[CustomerRow, bool]:
    """Create the account; an existing id with the same name is answered as is, with
    another name it is a Conflict."""
    with store.transaction():
        row = CustomerRow(id=customer_id, name=name, created_ms=now_ms)
        if store.insert_customer(row):
            audit.record(store, caller, "customer.create", f"customer:{customer_id}", now_ms,
                         after={"name": name})
            return row, True
        existing = get_customer(store, customer_id)
    if existing.name != name:
        raise Conflict(f"customer {customer_id} exists with another name")
    return existing, False


def get_customer(store: Store, customer_id: str) -> CustomerRow:
    row = store.get_customer(customer_id)
    if row is None:
        raise NotFound(f"customer {customer_id} not found")
    return row
