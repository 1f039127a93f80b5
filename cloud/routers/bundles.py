"""Release bundles: ops upload them (verified with the release public key), ops and
technicians list them (cloud.services.bundles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep, SettingsDep, raw_body
from cloud.errors import UnsupportedMediaType
from cloud.openapi import errors
from cloud.rollout_schemas import BundlePublic
from cloud.services import bundles as service

router = APIRouter(prefix="/api/v1/bundles", tags=["updates"])
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN))]
Ops = Annotated[Principal, Depends(requires(Role.OPS))]
Key = Annotated[str, Path(pattern=service.KEY_PATTERN)]


async def bundle_body(request: Request) -> bytes:
    """The raw bundle, of its own type, at most protocol.bundle.MAX_BUNDLE_BYTES (413)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != service.CONTENT_TYPE:
        raise UnsupportedMediaType(f"send the bundle file as Content-Type: {service.CONTENT_TYPE}"
                                   f" (got {kind[:60] or 'none'})")
    return await raw_body(request, "bundle", service.MAX_BYTES)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=BundlePublic,
    responses={200: {"model": BundlePublic, "description": "the same bundle was stored before"},
               **errors(409, 415, 422)},
    openapi_extra={"x-audit-action": "bundle.upload", "requestBody": {
        "required": True, "description": "a bundle file (protocol.bundle), as `fleetloop fw"
        " build` or `fleetloop fw diff` writes it",
        "content": {service.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
)
def upload(
    caller: Ops, body: Annotated[bytes, Depends(bundle_body)], store: DbDep, now_ms: NowDep,
    settings: SettingsDep, response: Response,
) -> BundlePublic:
    """Upload a release bundle (full or delta), verified with the release public key: the
    signature, the manifest's rules, every carried file's size and sha256 and a full bundle's
    image. A delta is verified over its base's manifest, so the full bundle of that product
    and base version must be uploaded first. 201 stored; 200 the same bytes were stored
    before; 409 other bytes under its key (a version never changes); 413 too large; 415 not
    `application/vnd.fleetloop.bundle`; 422 refused, with every reason (`reasons`); 503 the
    release public key is missing."""
    row, created = service.upload(store, caller, body, settings.release_pub, now_ms)
    if not created:
        response.status_code = status.HTTP_200_OK
    return BundlePublic.of(row)


@router.get("", response_model=list[BundlePublic], dependencies=READ)
def list_bundles(store: DbDep) -> list[BundlePublic]:
    """Every bundle the cloud keeps, newest first."""
    return [BundlePublic.of(r) for r in store.list_bundles()]


@router.get("/{key}", response_model=BundlePublic, dependencies=READ)
def get_bundle(key: Key, store: DbDep) -> BundlePublic:
    """One bundle; 404 unknown."""
    return BundlePublic.of(service.get(store, key))
