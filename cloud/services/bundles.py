"""Release bundles the cloud keeps for rollouts: uploaded by ops, verified here with the
release key's public half (protocol.bundle.read + verify; the private half stays with the
factory), kept whole in the database.

Why in the database rather than files under the cloud's home: a bundle is at most
protocol.bundle.MAX_BUNDLE_BYTES (about 1 MB) and there are a few per release, so the
database holds them easily; every worker, and every machine of a PostgreSQL deployment, then
serves the same bytes, and a bundle commits in the same transaction as its audit entry, so
there is never a row without bytes or bytes without a row.

A bundle's key names it: `<product>-<version>` for a full bundle, `<product>-<version>-from-
<base>` for a delta. A delta is verified over its base's manifest text, so the cloud must
hold the full bundle of that product and base version first. The same bytes sent again are
answered with the stored bundle; other bytes under a stored key are refused (409): a released
version never changes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cloud.errors import Conflict, NotFound, Refused, Unavailable
from cloud.rollout_store import BundleRow
from cloud.services import audit
from cloud.services.audit import Actor
from cloud.store import Store
from protocol import bundle as bundle_codec
from protocol import ota

CONTENT_TYPE = "application/vnd.fleetloop.bundle"
MAX_BYTES = bundle_codec.MAX_BUNDLE_BYTES
KEY_PATTERN = r"^[A-Za-z0-9._-]{1,80}$"
_KEY = re.compile(KEY_PATTERN)
FULL = "full"
DELTA = "delta"


def key_of(product: str, version: str, base: str | None = None) -> str:
    """The key of a product's bundle of `version` (full) or of its delta from `base`."""
    return f"{product}-{version}" if base is None else f"{product}-{version}-from-{base}"


def valid_key(key: str) -> bool:
    return bool(_KEY.match(key))


def release_key(path: Path) -> bytes:
    """The raw 32-byte release public key; Unavailable when it is missing or damaged."""
    try:
        return bundle_codec.read_release_pub(path)
    except bundle_codec.BundleError as exc:
        raise Unavailable(str(exc)) from None


def base_text(store: Store, product: str, base: str) -> str:
    """The manifest text of the product's full bundle of version `base` (a delta's base);
    Refused when the cloud does not hold it."""
    file0 = store.bundle_manifest(key_of(product, base))
    if file0 is None:
        raise Refused([f"upload the full bundle of {product} {base} first"
                       f" ({key_of(product, base)}): a delta is verified over its base"])
    return file0[ota.SIG_BYTES:].decode()


def upload(store: Store, caller: Actor, data: bytes, release_pub: Path,
           now_ms: int) -> tuple[BundleRow, bool]:
    """Verify and keep a bundle; (its row, True when it is new). Refused with every reason
    it fails for; Conflict when its key holds other bytes; Unavailable without the release
    public key (read only for a bundle whose layout is sound)."""
    try:
        bundle = bundle_codec.read(data)
    except bundle_codec.BundleError as exc:
        raise Refused([str(exc)]) from exc
    key = release_key(release_pub)
    whole: str | None = None
    if bundle.kind == DELTA:
        whole = base_text(store, bundle.product, bundle.base or "")  # read(): a delta has one
    problems = bundle_codec.verify(bundle, key, whole)
    if problems:
        raise Refused(problems)
    text = bundle.manifest_text(whole)
    row = BundleRow(
        key=key_of(bundle.product, bundle.version, bundle.base), offer_id=bundle.id(whole),
        kind=bundle.kind, base=bundle.base, product=bundle.product, version=bundle.version,
        min_version=bundle.min_version, files=len(ota.parse_manifest(text)["files"]),
        carried=len(bundle.files), size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        created_ms=now_ms, created_by=caller.name, manifest_size=len(bundle.signed_manifest))
    with store.transaction():
        existing = store.get_bundle(row.key)
        if existing is not None:
            if existing.sha256 == row.sha256:
                return existing, False
            raise Conflict(f"bundle {row.key} is stored with other bytes (sha256"
                           f" {existing.sha256[:16]}…): a released version never changes")
        store.insert_bundle(row, bundle.signed_manifest, data)
        audit.record(store, caller, "bundle.upload", f"bundle:{row.key}", now_ms,
                     after=facts(row))
    return row, True


def facts(row: BundleRow) -> dict[str, object]:
    return {"key": row.key, "id": row.offer_id, "kind": row.kind, "base": row.base,
            "product": row.product, "version": row.version, "min_version": row.min_version,
            "bytes": row.size, "files": row.files, "carried": row.carried}


def get(store: Store, key: str) -> BundleRow:
    row = store.get_bundle(key) if valid_key(key) else None
    if row is None:
        raise NotFound(f"bundle {key} not found")
    return row
