"""Ingest of one signed gateway batch: verify, check the chain, store in one transaction.

Outcomes (the router maps the errors to HTTP statuses):
- the next batch of the chain (seq == last + 1, prev == last digest): accepted. Each record and
  state is then judged on its own, as an item of the batch's version (protocol.batch): a
  valid one that is the device's own (cloud.services.tags: its tag verifies under the
  device's record key, or it is an untagged version 1 item of a device without a key) and
  whose device is assigned to this gateway (or to none yet: it is then assigned to this one)
  is stored; a record whose identity (device, incarnation, seq) exists with the same content
  counts as a duplicate, with other content as a conflict (cloud.services.identity); any
  other one is quarantined with its reason (cloud.services.quarantine). A device's consent
  records (protocol.record.is_consent) are judged the same way and stored in its stream;
  they are applied before its metric records of the batch are stored, and those are stored
  with what its consent does not allow removed (cloud.services.consent). Every verified
  state is kept as the device's vitals (cloud.services.vitals) and tells the rollouts its update
  word (cloud.services.progress.on_states). One bad record never
  refuses the batch, so it never blocks the records of other devices behind the same
  gateway. A device decommissioned or revoked in the registry (cloud.services.registry)
  has every item quarantined ("device revoked"). A device first seen in this batch is created even when all its items were
  quarantined (so its quarantine shows), but only an item accepted as the device's own
  assigns it to a gateway: a gateway cannot claim a device with records it made up;
- a batch already stored (seq <= last, same digest): a replay, answered like a success with
  nothing stored, so a gateway that lost our answer can safely send again;
- anything else (gap, wrong prev, a different batch under an old seq): Conflict;
- bad signature, malformed batch, batch fields out of range: InvalidRequest (batch-level
  problems only; the gateway dead-letters such a batch and sends a signed gap, see gaps.py).
Nothing is written unless the batch is accepted.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import repeat
from operator import contains, itemgetter, lt
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.errors import Conflict, InvalidRequest
from cloud.services import aggregates, identity, progress, registry, tags, vitals
from cloud.services import consent as consent_service
from cloud.services import quarantine as quarantine_service
from cloud.services.quarantine import RECORD, Item, Sorted
from cloud.store import BatchRow, DeviceRow, GatewayRow, QuarantineRow, Store
from protocol.batch import Batch, BatchError, open_sealed
from protocol.record import is_consent


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    seq: int
    replay: bool = False
    quarantined: int = 0
    aggregates: int = 0  # the gateway's aggregate records stored now


def ingest(
    store: Store, gateway: GatewayRow, body: bytes, signature: str | None, now_ms: int
) -> IngestResult:
    batch, digest = verify(gateway, body, signature)
    with store.transaction():
        head = check_chain(store, gateway.id, batch.seq, batch.prev, digest)
        if head is None:
            return IngestResult(0, len(batch.records), batch.seq, replay=True)
        items = quarantine_service.sort(batch, gateway.id, now_ms)
        stored, held = _store_contents(store, gateway.id, batch.seq, items, now_ms)
        # The gateway's own aggregate records (batch version 3), after the records and
        # states that may assign their devices (cloud.services.aggregates).
        summaries = aggregates.store_batch(store, gateway.id, batch.seq, batch.aggregates,
                                           now_ms)
        held = held + summaries.held
        store.append_batch(
            BatchRow(
                gateway=gateway.id, seq=batch.seq, digest=digest, prev=batch.prev,
                created_ms=batch.created_ms, received_ms=now_ms, records=len(batch.records),
                stored=stored, states=len(batch.states), quarantined=len(held),
            )
        )
    held_records = sum(1 for row in held if row.kind == quarantine_service.RECORD)
    duplicates = len(batch.records) - stored - held_records
    return IngestResult(stored, duplicates, batch.seq, quarantined=len(held),
                        aggregates=summaries.stored)


def check_chain(
    store: Store, gateway_id: str, seq: int, prev: str, digest: str
) -> GatewayRow | None:
    """The gateway's head when (seq, prev) is the next link; None for a replay of a stored
    link (same seq, same digest); Conflict otherwise. Call inside a transaction."""
    head = store.get_gateway(gateway_id)
    if head is None:  # deleted between authentication and now
        raise Conflict(f"gateway {gateway_id} is not registered")
    if seq <= head.last_seq:
        if store.batch_digest(gateway_id, seq) == digest:
            return None
        raise Conflict(
            f"batch {seq} differs from the batch {seq} already stored"
            f" (the chain is at {head.last_seq})"
        )
    if seq != head.last_seq + 1:
        raise Conflict(f"gap in the chain: expected batch {head.last_seq + 1}, got {seq}")
    if prev != head.last_digest:
        raise Conflict(f"batch {seq} does not chain: prev is not the digest of batch {head.last_seq}")
    return head


def verify(gateway: GatewayRow, body: bytes, signature: str | None) -> tuple[Batch, str]:
    """Open the batch with the gateway's registered key; InvalidRequest says what is wrong."""
    if not signature:
        raise InvalidRequest("missing X-Fleetloop-Signature header")
    try:
        key = Ed25519PublicKey.from_public_bytes(gateway.public_key)
        batch, digest = open_sealed(body, signature, key)
    except (BatchError, ValueError) as exc:
        raise InvalidRequest(f"batch refused: {exc}") from exc
    except RecursionError as exc:  # json nested deeper than the parser goes
        raise InvalidRequest("batch refused: nested too deeply") from exc
    if batch.gateway != gateway.id:
        raise InvalidRequest(f"batch is from gateway {batch.gateway}, not {gateway.id}")
    return batch, digest


def _store_contents(
    store: Store, gateway_id: str, batch_seq: int, items: Sorted, now_ms: int
) -> tuple[int, list[QuarantineRow]]:
    """Store the valid items of devices this gateway serves; quarantine the rest.
    Returns (records stored, the quarantined items)."""
    held = list(items.held)

    def hold(item: Item, reason: str) -> None:
        held.append(quarantine_service.hold(item.raw, item.kind, reason, gateway_id, batch_seq,
                                            now_ms, wire=item.wire is not None))

    stored = 0
    heard: dict[str, list[dict[str, Any]]] = {}  # verified states, for the rollouts
    assigned: list[str] = []  # devices this batch assigns to the gateway, for their offers
    for device_id in sorted(set(items.records) | set(items.states)):
        recs = items.records.get(device_id, [])
        states = items.states.get(device_id, [])
        device = store.get_device(device_id)
        if device is not None and device.gateway not in (None, gateway_id):
            reason = f"device {device_id} is assigned to gateway {device.gateway}"
            for item in (*recs, *states):
                hold(item, reason)
            continue
        status = None if device is None else _status(store, device_id)
        if status is not None:  # decommissioned or revoked: nothing of it is accepted
            for item in (*recs, *states):
                hold(item, registry.refused_reason(status))
            continue
        verifier = tags.Verifier(device_id, None if device is None else store.record_key(device_id))
        candidates = [*recs, *states]
        problems = verifier.problems(candidates)
        if any(problems):
            own_records: list[Item] = []
            own_states: list[Item] = []
            for item, problem in zip(candidates, problems, strict=True):
                if problem is not None:
                    hold(item, problem)
                elif item.kind == RECORD:
                    own_records.append(item)
                else:
                    own_states.append(item)
        else:  # the common case: all of them are the device's own
            own_records, own_states = recs, states
        if not own_records and not own_states:
            continue  # nothing of the device's own: it is not assigned on this batch's word
        if device is None:
            device = DeviceRow(id=device_id, product=None, created_ms=now_ms, gateway=gateway_id)
            store.insert_device(device)
        judged = identity.judge(store, device_id, own_records,
                                screened=consent_service.screened(device))
        for item, reason in judged.conflicts:
            hold(item, reason)
        new_objs = list(map(_object_of, judged.new))
        order = _incarnations(store, device_id, new_objs, now_ms)
        reported = [i.obj for i in own_states]
        # The product may first be named by a state of this batch: consent needs it.
        device = _with_states(device, reported)
        # Consent first (in stream order), then the metric records, screened by the tier
        # it leaves in effect (cloud.services.consent).
        consents = list(filter(is_consent, new_objs)) if _any_consent(new_objs) else []
        metric_records = [r for r in new_objs if not is_consent(r)] if consents else new_objs
        device = consent_service.apply_records(store, device, consents, now_ms=now_ms,
                                               order=order)
        screened = consent_service.screen_records(device, metric_records)
        new = consents + screened.records
        inserted = store.insert_records(device_id, gateway_id, batch_seq, new)
        consent_service.audit_late(store, device, screened, now_ms)
        stored += inserted
        device = _with_records(device, new, inserted, order)
        vitals.store_states(store, device_id, reported, now_ms)
        if reported:
            heard[device_id] = reported
        if device.gateway != gateway_id:
            assigned.append(device_id)
        store.save_device(replace(device, gateway=gateway_id,
                                  conflicts=device.conflicts + len(judged.conflicts)))
    progress.on_assigned(store, assigned)
    progress.on_states(store, heard, now_ms)  # update words (cloud.services.progress)
    _create_devices(store, {row.device for row in held if row.device}, now_ms)
    store.insert_quarantine(held)
    return stored, held


def _status(store: Store, device_id: str) -> str | None:
    """The device's registry status when it is not active (cloud.services.registry)."""
    row = store.registry(device_id)
    return None if row is None or row.status == registry.ACTIVE else row.status


def _incarnations(
    store: Store, device_id: str, new: list[dict[str, Any]], now_ms: int
) -> dict[int, int]:
    """incarnation -> its place in the order the device's incarnations first arrived,
    registering those of the `new` records that are not known yet (in batch order)."""
    known = store.incarnations(device_id)
    seen = set(known)
    # protocol.record.incarnation of each; dict.fromkeys keeps the batch order, once each
    for incarnation in dict.fromkeys(map(dict.get, new, repeat("i"), repeat(0))):
        if incarnation not in seen:
            store.add_incarnation(device_id, incarnation, now_ms)
            known.append(incarnation)
            seen.add(incarnation)
    return {incarnation: n for n, incarnation in enumerate(known)}


def _create_devices(store: Store, device_ids: set[str], now_ms: int) -> None:
    """A device whose items were all quarantined still exists from now on, so its quarantine
    shows on its page and the dashboard; it is assigned to no gateway until one delivers
    something that is the device's own."""
    for device_id in sorted(device_ids):
        if store.get_device(device_id) is None:
            store.insert_device(DeviceRow(id=device_id, product=None, created_ms=now_ms))


def _with_records(
    device: DeviceRow, recs: list[dict[str, Any]], inserted: int, order: dict[int, int]
) -> DeviceRow:
    """Count new rows; merge the metrics of records newer than the device's last record, in
    order: by the arrival of their incarnation, then by seq."""
    if not recs:
        return device
    metrics = dict(device.last_metrics)
    incarnation, last_seq = device.incarnation, device.last_seq
    top = (order.get(incarnation, -1), last_seq)
    incarnations = set(map(dict.get, recs, repeat("i"), repeat(0)))
    seqs = list(map(_seq_of, recs))
    if len(incarnations) == 1 and all(map(lt, seqs, seqs[1:])):
        # The common case: one incarnation, seqs rising, so the records are in the order the
        # sort below would give, and those newer than the device's last are the ones after
        # the last seq that is not (all of them, or none, for another incarnation).
        (only,) = incarnations
        place = order.get(only, -1)
        if place == top[0]:
            newer = recs[bisect_right(seqs, last_seq):]
        else:
            newer = recs if place > top[0] else []
        deque(map(metrics.update, map(dict.get, newer, repeat("m"), repeat(_NO_METRICS))), 0)
        if newer:
            incarnation, last_seq = only, newer[-1]["s"]
    else:
        # (place, position in the batch, record): sorted by place, stably, never comparing
        # dicts
        for place_seq, _, rec in sorted(((order.get(r.get("i", 0), -1), r["s"]), n, r)
                                        for n, r in enumerate(recs)):
            if place_seq > top:
                metrics.update(rec.get("m", {}))
                top, incarnation, last_seq = place_seq, rec.get("i", 0), rec["s"]
    return replace(
        device,
        records=device.records + inserted,
        incarnation=incarnation,
        last_seq=last_seq,
        last_metrics=metrics,
        last_seen_ms=_newest(device.last_seen_ms, [max(map(_time_of, recs))]),
    )


# Per-record steps of the usual batch run as map() in C: no Python code per record.
_object_of = itemgetter(1)  # of a quarantine.Item
_seq_of, _time_of = itemgetter("s"), itemgetter("t")  # of a record
_NO_METRICS: dict[str, Any] = {}  # read only


def _any_consent(records: list[dict[str, Any]]) -> bool:
    """Whether any record is a consent record (protocol.record.is_consent), in one pass."""
    return any(map(contains, records, repeat("c")))


def _with_states(device: DeviceRow, states: list[dict[str, Any]]) -> DeviceRow:
    """Keep the newest state (by device time; the later one in the batch on a tie), without
    its tag (it was verified; stored, it would only be noise)."""
    if not states:
        return device
    reported = device.reported
    for st in states:
        if reported is None or st.get("t", 0) >= reported.get("t", 0):
            reported = {k: v for k, v in st.items() if k != "h"}
    product = device.product
    if product is None and reported is not None and reported.get("profile"):
        product = reported["profile"]
    return replace(
        device,
        reported=reported,
        product=product,
        last_seen_ms=_newest(device.last_seen_ms, (s["t"] for s in states if "t" in s)),
    )


def _newest(current: int | None, times: Iterable[int]) -> int | None:
    for t in times:
        if current is None or t > current:
            current = t
    return current
