"""Devices and their telemetry, the read side: registration, listings, pages, the overview."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace

from cloud.errors import Conflict, InvalidRequest, NotFound
from cloud.services.gateways import GatewayStatus, statuses
from cloud.store import DeviceRow, QuarantineRow, Store, TelemetryRow

MAX_PAGE = 10000
LATEST_QUARANTINED = 10


@dataclass(frozen=True)
class Overview:
    """Everything the dashboard shows, read at one moment."""

    devices: list[DeviceRow]
    gateways: list[GatewayStatus]
    desired_versions: dict[str, int]
    records: int  # records stored, summed over the device rows (no telemetry scan)
    batches: int  # batches stored, the gateways' chain heads summed
    quarantined: dict[str, int]  # device id -> items in quarantine
    latest_quarantined: list[QuarantineRow]  # the fleet's newest, newest first


KEY_ROTATION = "record key already registered; key rotation is not supported yet"


def register_device(
    store: Store, device_id: str, product: str, now_ms: int, record_key: bytes | None = None
) -> tuple[DeviceRow, bool]:
    """Create the device, or set the product of one that exists (e.g. auto-created by ingest),
    and enrol its record key when one is given: the same key again changes nothing, another
    key for a device that has one is a Conflict (nothing is changed then).

    Returns (device, created).
    """
    with store.transaction():
        return upsert_device(store, device_id, product, now_ms, record_key)


def upsert_device(
    store: Store, device_id: str, product: str, now_ms: int, record_key: bytes | None = None
) -> tuple[DeviceRow, bool]:
    """register_device inside the caller's transaction."""
    device = store.get_device(device_id)
    if record_key is not None and device is not None:
        known = store.record_key(device_id)
        if known is not None and not hmac.compare_digest(known, record_key):
            raise Conflict(KEY_ROTATION)
    created = device is None
    if device is None:
        device = DeviceRow(id=device_id, product=product, created_ms=now_ms)
        store.insert_device(device)
    elif device.product != product:
        device = replace(device, product=product)
        store.save_device(device)
    if record_key is not None and (created or store.record_key(device_id) is None):
        store.set_record_key(device_id, record_key, now_ms)
    return device, created


def get_device(store: Store, device_id: str) -> DeviceRow:
    device = store.get_device(device_id)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    return device


def page(
    store: Store, device_id: str, after_incarnation: int | None, after_seq: int, limit: int
) -> list[TelemetryRow]:
    """The device's records after the cursor (after_incarnation, after_seq), at most `limit`
    (1..MAX_PAGE), ordered by the arrival of their incarnation, then by seq; the next cursor
    is the last record's (incarnation, seq).

    Without after_incarnation the cursor is in the device's only incarnation (so callers that
    page by seq alone keep working while a device has one); after_seq 0 then means from the
    start. InvalidRequest for an incarnation the device has no records of, and for a seq
    without incarnation when the device has several (it names no single record)."""
    limit = max(1, min(limit, MAX_PAGE))
    incarnations = store.incarnations(device_id)
    if after_incarnation is None:
        if after_seq == 0 or not incarnations:
            start, after_seq = 0, 0
        elif len(incarnations) == 1:
            start = 0
        else:
            raise InvalidRequest(
                f"device {device_id} has records of {len(incarnations)} incarnations:"
                " page with after_incarnation and after_seq (the last record's)"
            )
    elif after_incarnation in incarnations:
        start = incarnations.index(after_incarnation)
    else:
        raise InvalidRequest(f"device {device_id} has no records of incarnation {after_incarnation}")
    out: list[TelemetryRow] = []
    for incarnation in incarnations[start:]:
        out += store.telemetry(device_id, incarnation, after_seq, limit - len(out))
        if len(out) >= limit:
            break
        after_seq = 0
    return out


def overview(store: Store) -> Overview:
    """Read from the device, gateway, config and quarantine tables only: the dashboard
    refreshes this every few seconds, so nothing here may scan the telemetry table."""
    devices = store.list_devices()
    gateways = statuses(store)
    return Overview(
        devices=devices,
        gateways=gateways,
        desired_versions=store.desired_versions(),
        records=sum(d.records for d in devices),
        batches=sum(g.gateway.last_seq for g in gateways),
        quarantined=store.quarantine_counts(),
        latest_quarantined=store.quarantine(None, LATEST_QUARANTINED),
    )
