from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from cloud.deps import DbDep, DeviceOr404, NowDep, require_admin
from cloud.schemas import DeviceCreate, DevicePublic, TelemetryPage, TelemetryRecord
from cloud.services import telemetry as service
from cloud.store import DeviceRow

router = APIRouter(prefix="/api/v1/devices", tags=["devices"], dependencies=[Depends(require_admin)])


def public(row: DeviceRow) -> DevicePublic:
    return DevicePublic(
        id=row.id, product=row.product, last_seen_ms=row.last_seen_ms, last_seq=row.last_seq,
        records=row.records, last_metrics=row.last_metrics, reported=row.reported,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DevicePublic)
def create_device(
    body: DeviceCreate, store: DbDep, now_ms: NowDep, response: Response
) -> DevicePublic:
    """Register a device with its product. 201 when new; 200 when it existed (product updated)."""
    device, created = service.register_device(store, body.id, body.product, now_ms)
    if not created:
        response.status_code = status.HTTP_200_OK
    return public(device)


@router.get("", response_model=list[DevicePublic])
def list_devices(store: DbDep) -> list[DevicePublic]:
    """Every device with its last values and latest reported state."""
    return [public(row) for row in store.list_devices()]


@router.get("/{device_id}", response_model=DevicePublic)
def get_device(device: DeviceOr404) -> DevicePublic:
    """One device with its last values and latest reported state."""
    return public(device)


@router.get("/{device_id}/telemetry", response_model=TelemetryPage)
def get_telemetry(
    device: DeviceOr404,
    store: DbDep,
    after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 1000,
) -> TelemetryPage:
    """Records with seq > after_seq, oldest first; page on with the last seq returned."""
    rows = service.page(store, device.id, after_seq, limit)
    return TelemetryPage(
        device=device.id, records=[TelemetryRecord(seq=r.seq, t=r.t, m=r.m) for r in rows]
    )
