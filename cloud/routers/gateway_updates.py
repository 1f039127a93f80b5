"""What a gateway pulls for its devices' updates (cloud.services.offers): the offers, the
bundles they name and a delta's base manifest. Its own devices only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from cloud.deps import DbDep, GatewayDep, NowDep
from cloud.rollout_schemas import OfferPublic, Offers
from cloud.services import bundles, offers
from protocol import ota

router = APIRouter(prefix="/api/v1/gateway", tags=["updates"])
VERSION = r"^[0-9]{1,5}\.[0-9]{1,5}\.[0-9]{1,5}$"
_BINARY: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the bytes"}}


@router.get("/updates", response_model=Offers)
def updates(gateway: GatewayDep, store: DbDep, now_ms: NowDep) -> Offers:
    """The offers for the calling gateway's devices (those assigned to it): publish each
    retained on fleet/<device>/update, and clear the retained offer of a device no longer
    listed. Taking them marks pending devices offered; rollouts move on first."""
    return Offers(offers=[OfferPublic(device=o.device, bundle=o.bundle, base=o.base,
                                      offer=o.offer)
                          for o in offers.pull(store, gateway.id, now_ms)])


@router.get("/bundles/{key}", response_class=Response, responses=_BINARY)
def bundle(key: Annotated[str, Path(pattern=bundles.KEY_PATTERN)], gateway: GatewayDep,
           store: DbDep) -> Response:
    """A bundle's bytes (protocol.bundle), when a current offer of the calling gateway's
    devices names it; 404 otherwise."""
    return Response(offers.bundle_bytes(store, gateway.id, key),
                    media_type=bundles.CONTENT_TYPE)


@router.get("/manifests/{version}", response_class=Response, responses=_BINARY)
def manifest(
    version: Annotated[str, Path(pattern=VERSION)],
    product: Annotated[str, Query(pattern="^(" + "|".join(ota.PRODUCTS) + ")$")],
    gateway: GatewayDep, store: DbDep,
) -> Response:
    """File 0 (signature + manifest text) of the product's full bundle of `version`, when
    it is the base of a delta a current offer of the calling gateway's devices names: the
    gateway checks the delta over it. 404 otherwise."""
    return Response(offers.base_manifest(store, gateway.id, product, version),
                    media_type="application/octet-stream")
