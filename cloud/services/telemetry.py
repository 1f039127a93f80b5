"""Devices and their telemetry, the read side: registration, listings, pages, the overview."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cloud.errors import NotFound
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
    counts: dict[str, int]
    quarantined: dict[str, int]  # device id -> items in quarantine
    latest_quarantined: list[QuarantineRow]  # the fleet's newest, newest first


def register_device(
    store: Store, device_id: str, product: str, now_ms: int
) -> tuple[DeviceRow, bool]:
    """Create the device, or set the product of one that exists (e.g. auto-created by ingest).

    Returns (device, created).
    """
    with store.transaction():
        device = store.get_device(device_id)
        if device is None:
            device = DeviceRow(id=device_id, product=product, created_ms=now_ms)
            store.insert_device(device)
            return device, True
        if device.product != product:
            device = replace(device, product=product)
            store.save_device(device)
        return device, False


def get_device(store: Store, device_id: str) -> DeviceRow:
    device = store.get_device(device_id)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    return device


def page(store: Store, device_id: str, after_seq: int, limit: int) -> list[TelemetryRow]:
    """Records with seq > after_seq in seq order, at most `limit` (1..MAX_PAGE)."""
    limit = max(1, min(limit, MAX_PAGE))
    return store.telemetry(device_id, after_seq, limit)


def overview(store: Store) -> Overview:
    return Overview(
        devices=store.list_devices(),
        gateways=statuses(store),
        desired_versions=store.desired_versions(),
        counts=store.counts(),
        quarantined=store.quarantine_counts(),
        latest_quarantined=store.quarantine(None, LATEST_QUARANTINED),
    )
