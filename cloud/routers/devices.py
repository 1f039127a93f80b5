from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, DeviceOr404, NowDep, SignerDep
from cloud.fleet_schemas import DeviceCustomerPut, StatusChange
from cloud.openapi import errors
from cloud.routers.quarantine import Limit
from cloud.routers.quarantine import public as quarantine_public
from cloud.schemas import (
    ConsentAudit,
    ConsentHistory,
    ConsentPut,
    ConsentView,
    DeviceCreate,
    DeviceGatewayPut,
    DevicePublic,
    Heartbeat,
    QuarantinePublic,
    TelemetryPage,
    TelemetryRecord,
    as_tier,
)
from cloud.services import assignment, audit, customers, registry, vitals
from cloud.services import consent as consent_service
from cloud.services import quarantine as quarantine_service
from cloud.services import telemetry as service
from cloud.store import DeviceRow, RegistryRow, Store
from protocol.record import MAX_INCARNATION

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
# Who reads what (cloud.access: admin joins every one of them).
FLEET = [Depends(requires(Role.OPS, Role.TECHNICIAN, Role.ANALYST))]
DATA = [Depends(requires(Role.OPS, Role.ANALYST))]
SITE = [Depends(requires(Role.OPS, Role.TECHNICIAN))]
OPS = [Depends(requires(Role.OPS))]
Ops = Annotated[Principal, Depends(requires(Role.OPS))]


def scope_of(caller: Principal) -> str | None:
    """The customer a caller is confined to (cloud.services.customers); None: not confined.
    A customer-role caller without a customer is confined to nothing ("")."""
    return (caller.customer or "") if caller.role == Role.CUSTOMER else None


def public(
    row: DeviceRow, quarantined: int, keyed: bool, reg: RegistryRow | None = None
) -> DevicePublic:
    reg = reg or RegistryRow(device=row.id)
    return DevicePublic(
        id=row.id, product=row.product, gateway=row.gateway, last_seen_ms=row.last_seen_ms,
        incarnation=row.incarnation, last_seq=row.last_seq, records=row.records,
        quarantined=quarantined, conflicts=row.conflicts, record_key_registered=keyed,
        last_metrics=row.last_metrics, reported=row.reported,
        consent=as_tier(consent_service.effective(row)),
        vitals=vitals.summary(row),
        customer=reg.customer, hw_rev=reg.hw_rev, cert_fingerprint=reg.cert_fingerprint,
        enrolled_ms=reg.enrolled_ms,
        status=reg.status,  # type: ignore[arg-type]  # one of registry.STATUSES
        status_ms=reg.status_ms, status_reason=reg.status_reason,
    )


def public_one(store: Store, row: DeviceRow) -> DevicePublic:
    return public(row, store.quarantine_count(row.id), store.record_key(row.id) is not None,
                  store.registry(row.id))


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=DevicePublic,
    responses={200: {"model": DevicePublic, "description": "already enrolled: updated"},
               **errors(409)},
    openapi_extra={"x-audit-action": "device.create"},
)
def create_device(
    body: DeviceCreate, store: DbDep, now_ms: NowDep, response: Response,
    caller: Annotated[Principal, Depends(requires(Role.FACTORY, Role.OPS))],
) -> DevicePublic:
    """Enrol a device with its product and, optionally, its record key (base64 of the 32
    bytes the factory made; stored, never returned), customer, hardware revision and
    certificate fingerprint and serial. 201 when new; 200 when it existed (product and the
    registry fields given updated; its key enrolled if it had none, or the same key again);
    409 a different key for a device that has one (key rotation is not supported yet), or a
    device decommissioned or revoked; 422 a key that is not base64 of exactly 32 bytes, or a
    customer that does not exist."""
    device, _, created = registry.enrol(
        store, caller, body.id, body.product, now_ms, record_key=body.record_key_bytes(),
        customer=body.customer, hw_rev=body.hw_rev, cert_fingerprint=body.cert_fingerprint,
        cert_serial=body.cert_serial,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return public_one(store, device)


@router.get("", response_model=list[DevicePublic], dependencies=FLEET)
def list_devices(store: DbDep) -> list[DevicePublic]:
    """Every device with its gateway, last values, latest reported state, quarantine and
    conflict counts."""
    counts = store.quarantine_counts()
    keyed = store.record_key_devices()
    regs = {r.device: r for r in store.registries()}
    return [public(row, counts.get(row.id, 0), row.id in keyed, regs.get(row.id))
            for row in store.list_devices()]


@router.get("/{device_id}", response_model=DevicePublic, dependencies=FLEET)
def get_device(device: DeviceOr404, store: DbDep) -> DevicePublic:
    """One device with its gateway, last values, latest reported state, quarantine and
    conflict counts."""
    return public_one(store, device)


@router.put("/{device_id}/gateway", response_model=DevicePublic,
            openapi_extra={"x-audit-action": "device.assign"})
def put_gateway(
    caller: Annotated[Principal, Depends(requires(Role.OPS, Role.TECHNICIAN))],
    device: DeviceOr404, body: DeviceGatewayPut, store: DbDep, now_ms: NowDep,
) -> DevicePublic:
    """Move the device to another gateway (a device is otherwise bound to the first gateway
    that delivered its data). Its records from any other gateway are quarantined from now on,
    and its latest config goes out through the new gateway's config feed.

    404 unknown device; 422 a gateway that is not registered.
    """
    moved = assignment.assign(store, device.id, body.gateway)
    if moved.gateway != device.gateway:
        audit.record_now(store, caller, "device.assign", f"device:{device.id}", now_ms,
                         before={"gateway": device.gateway}, after={"gateway": moved.gateway})
    return public_one(store, moved)


@router.get(
    "/{device_id}/quarantine", response_model=list[QuarantinePublic], dependencies=SITE
)
def get_quarantine(device: DeviceOr404, store: DbDep, limit: Limit = 100) -> list[QuarantinePublic]:
    """The device's quarantined records and states, newest first, each with its reason."""
    return [quarantine_public(row) for row in quarantine_service.page(store, device.id, limit)]


@router.get("/{device_id}/telemetry", response_model=TelemetryPage,
            response_model_exclude_none=True, dependencies=DATA, responses=errors(400))
def get_telemetry(
    device: DeviceOr404,
    store: DbDep,
    after_incarnation: Annotated[int | None, Query(ge=0, le=MAX_INCARNATION)] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 1000,
) -> TelemetryPage:
    """The device's records, oldest first: by the arrival of their incarnation (a wiped
    device starts a new one at seq 1), then by seq. Page on with the last record's
    `incarnation` and `seq` as after_incarnation and after_seq. A device with one incarnation
    can be paged with after_seq alone; for one with several, after_seq without
    after_incarnation is 400 (it names no single record), as is an incarnation the device
    has no records of."""
    rows = service.page(store, device.id, after_incarnation, after_seq, limit)
    return TelemetryPage(
        device=device.id,
        records=[TelemetryRecord(incarnation=r.incarnation, seq=r.seq, t=r.t, m=r.m,
                                 consent=r.consent)
                 for r in rows],
    )


def consent_view(row: DeviceRow) -> ConsentView:
    return ConsentView(
        device=row.id,
        tier=as_tier(consent_service.effective(row)),
        reported=as_tier(row.consent_tier),
        cap=as_tier(row.consent_cap),
        cap_version=row.consent_cap_version,
    )


@router.put(
    "/{device_id}/consent", response_model=ConsentView, responses=errors(409),
    openapi_extra={"x-audit-action": "consent.narrow"},
)
def put_consent(
    device_id: str, body: ConsentPut, store: DbDep, signer: SignerDep, now_ms: NowDep,
    caller: Annotated[Principal, Depends(requires(Role.CUSTOMER))],
) -> ConsentView:
    """The customer's account narrows the device's consent to `tier` (essential < usage <
    personal). When that is narrower than its effective tier, in one transaction: a new config
    version (the latest desired settings, or none, plus `"consent": tier`, signed) goes out
    to the device, the cloud caps the device at `tier` until a consent record of the device
    shows it applied that version, every stored metric the tier does not allow is deleted
    from the device's records and last values, and the change is audited (GET
    .../consent). Equal to the effective tier: 200, nothing done. 404 unknown device; 422
    unknown tier; 409 a tier wider than the effective one (only the customer widens consent,
    on the product); 503 when the config-signing key is missing. A customer's token reaches
    only its own products: any other device is 404."""
    customers.own_device(store, scope_of(caller), device_id)
    before = store.get_device(device_id)
    after = consent_service.narrow(store, signer, device_id, body.tier, now_ms)
    tier_before = None if before is None else consent_service.effective(before)
    if consent_service.effective(after) != tier_before:
        audit.record_now(store, caller, "consent.narrow", f"device:{device_id}", now_ms,
                         before={"tier": tier_before},
                         after={"tier": consent_service.effective(after),
                                "config_version": after.consent_cap_version})
    return consent_view(after)


@router.get(
    "/{device_id}/consent", response_model=ConsentHistory,
    dependencies=[Depends(requires(Role.CUSTOMER, Role.OPS, Role.TECHNICIAN, Role.ANALYST))],
)
def get_consent(device: DeviceOr404, store: DbDep) -> ConsentHistory:
    """The device's consent: effective tier, the tier it reported, a cap requested in the
    cloud, and its audit history (every change of the effective tier and every deletion of
    stored metrics it caused), newest first."""
    view = consent_view(device)
    audit = [
        ConsentAudit(id=a.id, at_ms=a.at_ms, origin=a.origin, requested_by=a.requested_by,
                     from_tier=a.from_tier, to_tier=a.to_tier, fields=a.fields, rows=a.rows)
        for a in consent_service.audit(store, device.id)
    ]
    return ConsentHistory(**view.model_dump(), audit=audit)


@router.get("/{device_id}/vitals", response_model=list[Heartbeat], dependencies=FLEET)
def get_vitals(
    device: DeviceOr404,
    store: DbDep,
    limit: Annotated[int, Query(ge=1, le=vitals.MAX_PAGE)] = 100,
) -> list[Heartbeat]:
    """The device's verified states (vitals: why, uptime_s, heap_low, buffer_bytes,
    reconnects, consent, hint_ms, rssi, where its firmware sends them), newest first by
    device time; the cloud keeps the newest 1000 of each device."""
    return [
        Heartbeat(incarnation=h.incarnation, t=h.t, received_ms=h.received_ms, state=h.body)
        for h in vitals.page(store, device.id, limit)
    ]


@router.put("/{device_id}/customer", response_model=DevicePublic,
            openapi_extra={"x-audit-action": "device.customer"})
def put_customer(
    caller: Ops, device: DeviceOr404, body: DeviceCustomerPut, store: DbDep, now_ms: NowDep
) -> DevicePublic:
    """Assign the device to a customer (null: to nobody). 404 unknown device; 422 unknown
    customer."""
    registry.set_customer(store, caller, device.id, body.customer, now_ms)
    return public_one(store, device)


@router.post("/{device_id}/decommission", response_model=DevicePublic,
             openapi_extra={"x-audit-action": "device.decommissioned"})
def decommission(
    caller: Ops, device: DeviceOr404, body: StatusChange, store: DbDep, now_ms: NowDep
) -> DevicePublic:
    """Take the device out of service: from now on its records and states are quarantined
    ("device decommissioned"), never stored, and it gets no configs. 409 when it is revoked."""
    registry.set_status(store, caller, device.id, registry.DECOMMISSIONED, body.reason, now_ms)
    return public_one(store, device)


@router.post("/{device_id}/revoke", response_model=DevicePublic,
             openapi_extra={"x-audit-action": "device.revoked"})
def revoke(
    caller: Ops, device: DeviceOr404, body: StatusChange, store: DbDep, now_ms: NowDep
) -> DevicePublic:
    """Revoke the device's identity (final): its records and states are quarantined ("device
    revoked"), its certificate goes on the revocation list (GET /api/v1/revocations) that the
    factory signs into the device CA's CRL for the gateways' brokers."""
    registry.set_status(store, caller, device.id, registry.REVOKED, body.reason, now_ms)
    return public_one(store, device)
