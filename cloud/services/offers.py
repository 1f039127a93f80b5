"""What a gateway serves its devices: the offers of the rollouts for the devices assigned to
it (cloud.services.assignment), the bytes of the bundles those offers name, and a delta's
base manifest. A gateway sees only its own devices' offers and only the bundles they name.

A device is offered its rollout's bundle while its wave has started and it still needs the
bytes or is verifying or installing (pending ... rebooting; at committed it needs nothing). A
paused or auto-paused rollout makes no new offers: only devices mid-update (downloading ...
rebooting) keep theirs; an aborted one offers nothing, so the gateway clears its devices'
retained offers. A device is in at most one offering rollout (cloud.services.rollouts), so
a gateway never gets two offers for one device. Taking an offer marks a pending device
`offered` and keeps its baseline heap (the heap_low of its latest state) for its soak.

Taking offers does not move rollouts on (the cloud's clock does: cloud.ticker): a pull is a
read, and opens a write transaction only when it has pending devices to mark offered. `tag`
is a digest of a gateway's offers, which its long-poll (cloud.services.watch) compares.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from cloud.errors import NotFound
from cloud.rollout_store import BundleRow, RolloutDeviceRow, RolloutRow
from cloud.services import bundles, progress
from cloud.store import Store
from protocol import ota

BASELINE_STATES = 50  # newest states searched for a heap_low


@dataclass(frozen=True)
class Offer:
    device: str
    bundle: str  # the bundle's key
    base: str | None  # a delta's base version
    offer: dict[str, Any]  # protocol.ota's offer, as the gateway publishes it
    row: RolloutDeviceRow


def current(store: Store, gateway_id: str) -> list[Offer]:
    """The offers for the gateway's devices now (reads only). A rollout's offer is the same
    for all its devices: made once per rollout, one dict shared by them (read-only)."""
    made: dict[int, tuple[BundleRow, dict[str, Any]] | None] = {}
    out = []
    for row, state in store.gateway_rollout_devices(gateway_id):
        if not progress.offered(row.word, state):
            continue
        if row.rollout not in made:
            made[row.rollout] = _offer_of(store, store.get_rollout(row.rollout))
        found = made[row.rollout]
        if found is not None:
            bundle, offer = found
            out.append(Offer(row.device, bundle.key, bundle.base, offer, row))
    return out


def _offer_of(store: Store, rollout: RolloutRow | None
              ) -> tuple[BundleRow, dict[str, Any]] | None:
    bundle = None if rollout is None else store.get_bundle(rollout.bundle)
    if rollout is None or bundle is None:
        return None
    return bundle, json.loads(ota.encode_offer(bundle.offer_id, bundle.product, bundle.version,
                                               bundle.manifest_size, rollout.id))


def pull(store: Store, gateway_id: str, now_ms: int) -> list[Offer]:
    """The gateway takes its offers: pending devices become offered. Only a pull that finds
    pending devices writes (read again inside the transaction: another worker may have moved
    the rollout meanwhile)."""
    offers = current(store, gateway_id)
    if not any(o.row.word == ota.PENDING for o in offers):
        return offers
    with store.transaction():
        offers = current(store, gateway_id)
        taken = [replace(o.row, word=ota.OFFERED, since_ms=now_ms, offered_ms=now_ms,
                         baseline_heap=baseline_heap(store, o.device))
                 for o in offers if o.row.word == ota.PENDING]
        store.save_rollout_devices(taken)
    return offers


def tag(store: Store, gateway_id: str) -> str:
    """A digest of what the gateway is offered now (devices, bundles, offers): it differs
    when an offer appeared, changed or went. A device only marked offered keeps it."""
    h = hashlib.sha256()
    canonical: dict[int, str] = {}  # id of a rollout's shared offer dict -> its JSON
    for o in sorted(current(store, gateway_id), key=lambda o: o.device):
        text = canonical.get(id(o.offer))
        if text is None:
            text = canonical[id(o.offer)] = json.dumps(
                [o.bundle, o.base, o.offer], sort_keys=True, separators=(",", ":"))
        h.update(f"{o.device} {text}\n".encode())
    return h.hexdigest()[:32]


def baseline_heap(store: Store, device_id: str) -> int | None:
    """The heap_low of the device's latest state that has one."""
    for beat in store.heartbeats(device_id, BASELINE_STATES):
        low = beat.body.get("heap_low")
        if isinstance(low, int):
            return low
    return None


def bundle_bytes(store: Store, gateway_id: str, key: str) -> bytes:
    """A bundle some current offer of the gateway names; NotFound otherwise."""
    if bundles.valid_key(key) and any(o.bundle == key for o in current(store, gateway_id)):
        data = store.bundle_data(key)
        if data is not None:
            return data
    raise NotFound(f"bundle {key[:80]} is not offered to this gateway's devices")


def base_manifest(store: Store, gateway_id: str, product: str, version: str) -> bytes:
    """File 0 of the product's full bundle of `version`, when it is the base of a delta some
    current offer of the gateway names; NotFound otherwise."""
    if any(o.base == version and o.offer["product"] == product
           for o in current(store, gateway_id)):
        file0 = store.bundle_manifest(bundles.key_of(product, version))
        if file0 is not None:
            return file0
    raise NotFound(f"no offer of this gateway's devices is a delta from {product} {version}")
