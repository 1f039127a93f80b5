from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, DeviceOr404, GatewayDep, NowDep, SignerDep
from cloud.schemas import (
    ConfigEnvelope,
    ConfigPublic,
    ConfigPut,
    DesiredConfig,
    DeviceConfig,
    GatewayConfigs,
    ReportedConfig,
)
from cloud.services import audit, telemetry
from cloud.services import config as service

router = APIRouter(tags=["configs"])
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN))]


@router.put("/api/v1/devices/{device_id}/config", response_model=ConfigPublic,
            openapi_extra={"x-audit-action": "config.put"})
def put_config(
    device_id: str, body: ConfigPut, store: DbDep, signer: SignerDep, now_ms: NowDep,
    caller: Annotated[Principal, Depends(requires(Role.OPS))],
) -> ConfigPublic:
    """Set the desired settings: a new version, signed with the cloud's config key.

    Settings are checked before the device is looked up (422 before 404): settings the
    device would refuse are wrong for every device.
    """
    settings = service.check_settings(body.settings)
    device = telemetry.get_device(store, device_id)
    before = service.desired(store, device.id)
    row = service.put_desired(store, signer, device.id, settings, now_ms)
    audit.record_now(store, caller, "config.put", f"device:{device.id}", now_ms,
                     before=None if before is None else {"version": before.version,
                                                         "settings": before.settings},
                     after={"version": row.version, "settings": row.settings})
    return ConfigPublic(device=row.device, version=row.version, settings=row.settings)


@router.get("/api/v1/devices/{device_id}/config", response_model=DeviceConfig, dependencies=READ)
def get_config(device: DeviceOr404, store: DbDep) -> DeviceConfig:
    """Desired config (latest version) and what the device last reported about its config."""
    desired = service.desired(store, device.id)
    reported = service.reported(device)
    return DeviceConfig(
        desired=None if desired is None else DesiredConfig(
            version=desired.version, settings=desired.settings
        ),
        reported=None if reported is None else ReportedConfig(
            config_version=reported.config_version,
            config_status=reported.config_status,
            reason=reported.reason,
        ),
    )


@router.get("/api/v1/gateway/configs", response_model=GatewayConfigs)
def gateway_configs(
    gateway: GatewayDep,
    store: DbDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> GatewayConfigs:
    """Signed envelopes of the calling gateway's devices whose config changed after `after`."""
    revision, rows = service.feed(store, after, gateway.id)
    return GatewayConfigs(
        revision=revision,
        configs=[ConfigEnvelope(device=r.device, version=r.version, envelope=r.envelope) for r in rows],
    )
