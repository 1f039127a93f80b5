"""Cloud -> gateway for updates: the offers for this gateway's devices and the bytes behind them.

The gateway pulls (it works behind NAT), with its gateway token, like the config downlink:
    GET /api/v1/gateway/updates                     {"offers": [{"device", "bundle", "base",
                                                     "offer"}, ...]}
    GET /api/v1/gateway/bundles/{key}               a bundle's bytes (protocol.bundle)
    GET /api/v1/gateway/manifests/{version}?product=P   file 0 of that version's full bundle
Every answer is read with a byte limit before it is parsed, and every offer entry is checked on
its own: one bad entry is reported and skipped, never stops the others. Nothing here trusts a
bundle: gateway.ota_cache verifies what it downloads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from gateway.errors import GatewayError
from gateway.uplink import read_token
from protocol import bundle as bundle_codec
from protocol import ota, topics

OFFERS_PATH = "/api/v1/gateway/updates"
BUNDLE_PATH = "/api/v1/gateway/bundles/"
MANIFEST_PATH = "/api/v1/gateway/manifests/"
MAX_OFFERS_BYTES = 16 * 1024 * 1024  # ~60,000 offers: far beyond one gateway's devices
MAX_SIGNED_MANIFEST = ota.SIG_BYTES + ota.MAX_MANIFEST_BYTES
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")  # the cloud's keys; also a file name here


class UpdateCloudError(GatewayError):
    """A request for update data failed (unreachable, refused, malformed)."""


class TooLarge(UpdateCloudError):
    """An answer longer than what the caller can take."""


def valid_key(key: object) -> bool:
    """A bundle key: 1-80 of [A-Za-z0-9._-], starting with a letter or digit (it names a file
    in the cache and a URL path segment, so no '/', no '..', no hidden name)."""
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


@dataclass(frozen=True)
class OfferEntry:
    """One device's offer as the cloud lists it, checked."""

    device: str
    bundle: str  # the bundle's key
    base: str | None  # a delta's base version
    offer_id: str
    product: str
    version: str
    size: int  # bytes of file 0
    payload: bytes  # the canonical offer (protocol.ota.encode_offer): what the device gets


def parse_entry(item: Any) -> OfferEntry:
    """One entry of the offers list; ValueError says what is wrong with it."""
    if not isinstance(item, dict) or set(item) != {"device", "bundle", "base", "offer"}:
        raise ValueError("an offer entry needs exactly device, bundle, base and offer")
    device, key, base, offer = item["device"], item["bundle"], item["base"], item["offer"]
    if not topics.valid_device_id(device):
        raise ValueError(f"invalid device id {str(device)[:70]!r}")
    if not valid_key(key):
        raise ValueError(f"invalid bundle key {str(key)[:90]!r}")
    if base is not None:
        ota.parse_version(base)
    if not isinstance(offer, dict):
        raise ValueError("offer must be an object")
    try:
        raw = json.dumps(offer, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"offer cannot be encoded: {exc}") from None
    o = ota.decode_offer(raw)
    if o is None:
        raise ValueError("offer is empty")
    payload = ota.encode_offer(o["id"], o["product"], o["version"], o["size"], o["rollout"])
    return OfferEntry(device, key, base, o["id"], o["product"], o["version"], o["size"], payload)


def parse_offers(obj: Any) -> tuple[list[OfferEntry], list[str]]:
    """(the good entries, one problem per bad entry) of an offers answer; UpdateCloudError when
    the answer as a whole is not one. A device listed twice keeps its first entry."""
    offers = obj.get("offers") if isinstance(obj, dict) else None
    if not isinstance(offers, list):
        raise UpdateCloudError("offers answer needs an offers list")
    entries: dict[str, OfferEntry] = {}
    problems = []
    for item in offers:
        try:
            entry = parse_entry(item)
        except ValueError as exc:
            problems.append(f"offer entry refused: {exc}")
            continue
        if entry.device in entries:
            problems.append(f"{entry.device} is offered twice; kept the first")
            continue
        entries[entry.device] = entry
    return list(entries.values()), problems


class UpdateCloud:
    """The three endpoints, over one HTTP client: `with UpdateCloud(...) as cloud:`."""

    def __init__(self, cloud_url: str, token_path: Path, timeout_s: float = 10.0) -> None:
        self._base = cloud_url.rstrip("/")
        self._token_path = token_path
        self._timeout_s = timeout_s
        self._http: httpx.Client | None = None

    def __enter__(self) -> UpdateCloud:
        self._http = httpx.Client(timeout=self._timeout_s)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def offers(self) -> tuple[list[OfferEntry], list[str]]:
        body = self._get(OFFERS_PATH, {}, MAX_OFFERS_BYTES, "offers")
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise UpdateCloudError("offers answer is not JSON") from exc
        return parse_offers(obj)

    def bundle(self, key: str, limit: int = bundle_codec.MAX_BUNDLE_BYTES) -> bytes:
        """The bundle's bytes; TooLarge past `limit` (read no further)."""
        if not valid_key(key):
            raise UpdateCloudError(f"invalid bundle key {key[:90]!r}")
        return self._get(BUNDLE_PATH + key, {}, min(limit, bundle_codec.MAX_BUNDLE_BYTES),
                         f"bundle {key}")

    def manifest(self, version: str, product: str) -> bytes:
        """File 0 (signature + manifest text) of a version's full bundle: a delta's base."""
        ota.parse_version(version)
        if product not in ota.PRODUCTS:
            raise UpdateCloudError(f"unknown product {product[:20]!r}")
        return self._get(MANIFEST_PATH + version, {"product": product}, MAX_SIGNED_MANIFEST,
                         f"manifest {product} {version}")

    def _get(self, path: str, params: dict[str, str], limit: int, what: str) -> bytes:
        if self._http is None:
            raise UpdateCloudError("UpdateCloud used outside its with block")
        token = read_token(self._token_path)
        if token is None:
            raise UpdateCloudError(f"no gateway token in {self._token_path}")
        try:
            with self._http.stream("GET", self._base + path, params=params,
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status_code != 200:
                    head = _read_limited(resp, 200, what, truncate=True)
                    raise UpdateCloudError(f"{what}: the cloud answered {resp.status_code}: "
                                           f"{head.decode(errors='replace')}")
                return _read_limited(resp, limit, what)
        except httpx.HTTPError as exc:
            raise UpdateCloudError(f"{what}: cloud unreachable: {type(exc).__name__}: "
                                   f"{exc}") from exc


def _read_limited(resp: httpx.Response, limit: int, what: str, truncate: bool = False) -> bytes:
    declared = resp.headers.get("content-length", "")
    if not truncate and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what} is {int(declared)} bytes, more than {limit}")
    out = bytearray()
    for part in resp.iter_bytes():
        out += part
        if len(out) > limit:
            if truncate:
                return bytes(out[:limit])
            raise TooLarge(f"{what} is more than {limit} bytes")
    return bytes(out)
