"""The update cache: each bundle is downloaded from the cloud once, verified, kept on disk under
the gateway's home, and served to every device that is offered it.

Files (directory 0700, files 0600, written to a temporary name, fsynced, renamed):
    <home>/gateways/<gw>/updates/<key>.flb    the bundle, exactly as the cloud sent it
    <home>/gateways/<gw>/updates/<key>.base   a delta's base: file 0 of the base version
A bundle is verified with the release public key before it is kept (protocol.bundle.read +
verify; a delta over its base's manifest text, whose own signature is checked too), and again
when a restart loads it from disk: a file changed on disk is dropped and downloaded again.

The cache holds at most `budget_bytes` on disk. To make room it removes the least recently used
bundles (by file time, touched while offers use them) that no current offer references. A
bundle that still cannot fit, or that fails verification, is refused: its reason shows in the
status and it is tried again only after a growing wait (capped, jittered), never in a loop.
Cloud downloads are counted per bundle in gateway.db: the promise is one per gateway per
version, and the count survives restarts like the files do.

One thread (gateway.updates) calls ensure()/retain(); status() may be called from any thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.backoff import Backoff
from gateway.errors import GatewayError
from gateway.ota_cloud import TooLarge, valid_key
from gateway.ota_records import OtaRecords
from protocol import bundle as bundle_codec
from protocol import ota

log = logging.getLogger("fleetloop.gateway.ota_cache")

BUNDLE_SUFFIX = ".flb"
BASE_SUFFIX = ".base"
TOUCH_EVERY_S = 60.0  # how often a bundle in use has its file time refreshed (the LRU clock)


class Refused(GatewayError):
    """A bundle the cache will not keep or offer, with the reason an operator reads."""


class Source(Protocol):
    """Where bundles come from (gateway.ota_cloud.UpdateCloud)."""

    def bundle(self, key: str, limit: int) -> bytes: ...

    def manifest(self, version: str, product: str) -> bytes: ...


@dataclass(frozen=True)
class Ready:
    """A verified bundle, as the devices fetch it."""

    key: str
    offer_id: str  # protocol.ota.bundle_id of its (rebuilt) manifest
    product: str
    version: str
    kind: str  # full | delta
    base: str | None
    files: dict[int, bytes]  # 0: file 0 (signature + manifest or patch); i: carried file i
    disk_bytes: int


@dataclass
class _Refusal:
    reason: str
    backoff: Backoff
    retry_at: float
    tries: int = 1


def check_base(file0: bytes, release_pub: bytes, version: str, product: str) -> str:
    """The manifest text of a delta's base from its file 0, once its signature, its rules and
    its product and version check out; Refused otherwise."""
    if not ota.SIG_BYTES < len(file0) <= ota.SIG_BYTES + ota.MAX_MANIFEST_BYTES:
        raise Refused(f"base {version}: file 0 size out of bounds")
    try:
        text = file0[ota.SIG_BYTES:].decode()
        m = ota.parse_manifest(text)
    except (UnicodeError, ValueError) as exc:
        raise Refused(f"base {version}: manifest: {exc}") from None
    try:
        Ed25519PublicKey.from_public_bytes(release_pub).verify(
            file0[:ota.SIG_BYTES], ota.signed_message(hashlib.sha256(text.encode()).digest()))
    except (InvalidSignature, ValueError):
        raise Refused(f"base {version}: bad signature: not signed by this release key") from None
    if (m["product"], m["version"]) != (product, version):
        raise Refused(f"base is {m['product']} {m['version']}, the delta needs {product} {version}")
    return text


def read_bundle(data: bytes) -> bundle_codec.Bundle:
    try:
        return bundle_codec.read(data)
    except bundle_codec.BundleError as exc:
        raise Refused(str(exc)) from None


def verify_bundle(key: str, b: bundle_codec.Bundle, size: int, release_pub: bytes,
                  base_file0: bytes | None) -> Ready:
    """Verify a read bundle of `size` bytes (a delta with its base's file 0); Refused with every
    reason."""
    base_text = None
    if b.kind == "delta":
        if base_file0 is None or b.base is None:
            raise Refused(f"delta over {b.base} without its base's manifest")
        base_text = check_base(base_file0, release_pub, b.base, b.product)
    problems = bundle_codec.verify(b, release_pub, base_text)
    if problems:
        raise Refused("; ".join(problems))
    files = {0: b.signed_manifest, **b.files}
    return Ready(key, b.id(base_text), b.product, b.version, b.kind, b.base, files,
                 size + (len(base_file0) if base_file0 else 0))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a power cut
    finally:
        os.close(dfd)


def _now_ms() -> int:
    return int(time.time() * 1000)


class BundleCache:
    def __init__(self, directory: Path, budget_bytes: int, release_pub: Path, records: OtaRecords,
                 retry_min_s: float = 30.0, retry_max_s: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic,
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self._dir = directory
        self._budget = budget_bytes
        self._release_pub = release_pub
        self._records = records
        self._retry = (retry_min_s, retry_max_s)
        self._clock = clock
        self._clock_ms = clock_ms
        self._lock = threading.Lock()  # guards the fields below (status() reads them)
        self._disk: dict[str, int] = {}  # key -> bytes on disk (bundle + base)
        self._loaded: dict[str, Ready] = {}
        self._refused: dict[str, _Refusal] = {}
        self._downloads: dict[str, int] = {}
        self._touched: dict[str, float] = {}
        self._evicted = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        """Create the directory; drop half-written files; learn what is on disk and the counts."""
        try:
            disk = self._scan()
        except OSError as exc:
            raise GatewayError(f"cannot open the update cache {self._dir}: {exc}") from exc
        downloads = self._records.downloads()
        with self._lock:
            self._disk, self._downloads = disk, downloads

    def _scan(self) -> dict[str, int]:
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)
        disk: dict[str, int] = {}
        for path in self._dir.iterdir():
            if path.name.endswith(BUNDLE_SUFFIX) and valid_key(path.name[:-len(BUNDLE_SUFFIX)]):
                base = path.with_suffix(BASE_SUFFIX)
                extra = base.stat().st_size if base.exists() else 0
                disk[path.name[:-len(BUNDLE_SUFFIX)]] = path.stat().st_size + extra
        for path in self._dir.iterdir():  # temporaries of a crash, bases without a bundle
            stem = path.name[:-len(BASE_SUFFIX)] if path.name.endswith(BASE_SUFFIX) else None
            if path.name.endswith(".tmp") or (stem is not None and stem not in disk):
                path.unlink(missing_ok=True)
        return disk

    # -- for gateway.updates -------------------------------------------------------------------
    def load(self, key: str) -> Ready | None:
        """The verified bundle `key` from memory or disk, never from the cloud."""
        if not valid_key(key):
            return None
        with self._lock:
            ready = self._loaded.get(key)
            on_disk = key in self._disk
        if ready is not None or not on_disk:
            return ready
        return self._load(key)

    def ensure(self, key: str, source: Source, keep: set[str]) -> Ready | None:
        """The verified bundle `key`: from memory, else from disk, else downloaded once from
        `source` (making room by evicting bundles not in `keep`). None while it is refused
        (the reason is in status(); tried again after the wait) or could not be fetched."""
        if not valid_key(key):  # it names files: gateway.ota_cloud checked it, and so do we
            return None
        with self._lock:
            ready = self._loaded.get(key)
            refusal = self._refused.get(key)
            on_disk = key in self._disk
        if ready is not None:
            self._touch(key)
            return ready
        if on_disk:
            ready = self._load(key)
            if ready is not None:
                return ready
        if refusal is not None and self._clock() < refusal.retry_at:
            return None
        try:
            ready = self._download(key, source, keep)
        except (GatewayError, ValueError) as exc:  # Refused, the cloud's errors
            self._refuse(key, str(exc))
            return None
        except OSError as exc:  # the disk: full, read-only
            self._refuse(key, f"cannot write it to {self._dir}: {exc.strerror}")
            return None
        with self._lock:
            self._refused.pop(key, None)
            self._loaded[key] = ready
        return ready

    def retain(self, keep: set[str]) -> None:
        """Keep in memory only what current offers use; forget refusals of bundles no offer
        names any more (the reason leaves the status with the offer)."""
        with self._lock:
            for key in [k for k in self._loaded if k not in keep]:
                del self._loaded[key]
            for key in [k for k in self._refused if k not in keep]:
                del self._refused[key]

    def status(self) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            return {
                "budget_bytes": self._budget,
                "bytes": sum(self._disk.values()),
                "bundles": [{"key": k, "bytes": n, "downloads": self._downloads.get(k, 0),
                             "in_use": k in self._loaded} for k, n in sorted(self._disk.items())],
                "cloud_downloads": sum(self._downloads.values()),
                "evicted": self._evicted,
                "refused": [{"key": k, "reason": r.reason, "tries": r.tries,
                             "retry_in_s": max(0, round(r.retry_at - now))}
                            for k, r in sorted(self._refused.items())],
            }

    # -- inside --------------------------------------------------------------------------------
    def _path(self, key: str, suffix: str) -> Path:
        return self._dir / (key + suffix)

    def _pub(self) -> bytes:
        try:
            return bundle_codec.read_release_pub(self._release_pub)
        except bundle_codec.BundleError as exc:
            raise Refused(str(exc)) from None

    def _touch(self, key: str) -> None:
        now = self._clock()
        if now - self._touched.get(key, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[key] = now
        try:
            os.utime(self._path(key, BUNDLE_SUFFIX))
        except OSError:
            pass  # only the eviction order suffers

    def _load(self, key: str) -> Ready | None:
        """A bundle from disk, verified again; a file that fails is dropped (downloaded again)."""
        try:
            data = self._path(key, BUNDLE_SUFFIX).read_bytes()
            base_path = self._path(key, BASE_SUFFIX)
            base = base_path.read_bytes() if base_path.exists() else None
            ready = verify_bundle(key, read_bundle(data), len(data), self._pub(), base)
        except (OSError, Refused) as exc:
            log.warning("cached bundle %s is unusable (%s); removing it", key, exc)
            self._remove(key)
            return None
        with self._lock:
            self._loaded[key] = ready
        self._touch(key)
        return ready

    def _download(self, key: str, source: Source, keep: set[str]) -> Ready:
        pub = self._pub()
        with self._lock:
            held = sum(n for k, n in self._disk.items() if k in keep and k != key)
        room = self._budget - held
        try:
            data = source.bundle(key, room)
        except TooLarge as exc:
            raise Refused(f"does not fit the cache: {exc} (budget {self._budget} bytes, {held} "
                          "held by bundles current offers use)") from None
        count = self._records.count_download(key, self._clock_ms())
        with self._lock:
            self._downloads[key] = count
        log.info("downloaded bundle %s (%d bytes, cloud download %d)", key, len(data), count)
        b = read_bundle(data)
        base = source.manifest(b.base, b.product) if b.kind == "delta" and b.base else None
        ready = verify_bundle(key, b, len(data), pub, base)
        if ready.disk_bytes > room:
            raise Refused(f"does not fit the cache: {ready.disk_bytes} bytes (budget "
                          f"{self._budget} bytes, {held} held by bundles current offers use)")
        self._make_room(ready.disk_bytes, keep | {key})
        if base is not None:
            _write_atomic(self._path(key, BASE_SUFFIX), base)
        _write_atomic(self._path(key, BUNDLE_SUFFIX), data)
        with self._lock:
            self._disk[key] = ready.disk_bytes
        self._touched[key] = self._clock()
        return ready

    def _make_room(self, need: int, keep: set[str]) -> None:
        """Evict the least recently used bundles outside `keep` until `need` more bytes fit."""
        with self._lock:
            used = sum(self._disk.values())
            spare = [k for k in self._disk if k not in keep]
        if used + need <= self._budget:
            return

        def mtime(key: str) -> float:
            try:
                return self._path(key, BUNDLE_SUFFIX).stat().st_mtime
            except OSError:
                return 0.0

        for key in sorted(spare, key=mtime):
            if used + need <= self._budget:
                break
            with self._lock:
                used -= self._disk.get(key, 0)
                self._evicted += 1
            log.info("evicting bundle %s from the update cache (least recently used)", key)
            self._remove(key)

    def _remove(self, key: str) -> None:
        for suffix in (BUNDLE_SUFFIX, BASE_SUFFIX):
            self._path(key, suffix).unlink(missing_ok=True)
        with self._lock:
            self._disk.pop(key, None)
            self._loaded.pop(key, None)
        self._touched.pop(key, None)

    def _refuse(self, key: str, reason: str) -> None:
        reason = reason[:300]
        with self._lock:
            refusal = self._refused.get(key)
            if refusal is None:
                refusal = _Refusal(reason, Backoff(*self._retry), 0.0, 0)
                self._refused[key] = refusal
            refusal.reason = reason
            refusal.tries += 1
            wait = refusal.backoff.next()
            refusal.retry_at = self._clock() + wait
        log.warning("bundle %s refused: %s (next try in %.0f s)", key, reason, wait)
