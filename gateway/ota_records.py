"""What the gateway remembers about updates in its database (tables update_offers and
update_bundles, made by gateway.store): the offer the broker holds retained for each device, and
how often each bundle's bytes came from the cloud. Both must survive a restart: the first so a
restart neither publishes an offer again nor forgets to clear one the cloud withdrew while the
gateway was down, the second because the promise is one cloud download per bundle per gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store import Store


@dataclass(frozen=True)
class Published:
    """An offer the broker holds retained on fleet/<device>/update."""

    device: str
    bundle: str  # the cache key of the bundle it offers
    offer_id: str
    payload: bytes  # exactly what was published


class OtaRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    def published(self) -> dict[str, Published]:
        with self._store.transaction() as db:
            rows = db.execute("SELECT device, bundle, offer_id, payload FROM update_offers")
            return {r[0]: Published(r[0], r[1], r[2], bytes(r[3])) for r in rows}

    def set_published(self, p: Published, now_ms: int) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO update_offers (device, bundle, offer_id, payload, published_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET"
                " bundle = excluded.bundle, offer_id = excluded.offer_id,"
                " payload = excluded.payload, published_ms = excluded.published_ms",
                (p.device, p.bundle, p.offer_id, p.payload, now_ms))

    def forget_published(self, device: str) -> None:
        with self._store.transaction() as db:
            db.execute("DELETE FROM update_offers WHERE device = ?", (device,))

    def downloads(self) -> dict[str, int]:
        """Cloud downloads per bundle key, ever."""
        with self._store.transaction() as db:
            return {k: int(n) for k, n in db.execute("SELECT key, downloads FROM update_bundles")}

    def count_download(self, key: str, now_ms: int) -> int:
        """One more cloud download of `key`; returns its new count."""
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO update_bundles (key, downloads, last_download_ms) VALUES (?, 1, ?)"
                " ON CONFLICT (key) DO UPDATE SET downloads = downloads + 1,"
                " last_download_ms = excluded.last_download_ms", (key, now_ms))
            row = db.execute("SELECT downloads FROM update_bundles WHERE key = ?",
                             (key,)).fetchone()
        return int(row[0])
