"""The gateways' aggregate records (protocol.aggregate): stored from verified batches, served
per device, screened by consent.

An aggregate is the gateway's word, signed by its batch signature only (no device tag covers
it), so it is accepted only for a device already assigned to that gateway (by something the
device signed: a record or a state, possibly earlier in the same batch) and active in the
registry; it never assigns a device. One that fails any check is quarantined (kind
`aggregate`) with its reason, like a record, and the rest of the batch is stored. Its metrics
are stored without what the device's effective consent tier does not allow
(cloud.services.consent), and a later narrowing removes them from stored aggregates too.

What each product's records become at the gateways is chosen here by cloud ops (`set_mode`:
raw, N or N:local, protocol.aggregate.parse_mode) and fetched by every gateway (`modes`); a
gateway started with its own `aggregate` setting follows that instead (a site's override).

Raw records kept at the gateway: an aggregate with raw = "local" stands for records the cloud
will never see, by the product's configuration at the gateway; `raw_kept` counts them per
device, so the device's page and API say where they are instead of showing a hole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cloud.aggregate_store import AggregateRow, ModeRow, RawKept
from cloud.errors import Refused
from cloud.services import consent as consent_service
from cloud.services import quarantine as quarantine_service
from cloud.services import registry
from cloud.store import QuarantineRow, Store
from protocol import aggregate as aggregate_codec
from protocol.record import valid_metric_name

AGGREGATE = "aggregate"  # the quarantine kind of a refused aggregate
MAX_PAGE = 2000


@dataclass(frozen=True)
class Stored:
    stored: int
    duplicates: int
    held: list[QuarantineRow]


def store_batch(store: Store, gateway_id: str, batch_seq: int, items: tuple[Any, ...],
                now_ms: int) -> Stored:
    """Judge and store a batch's aggregates; call inside the batch's transaction, after its
    records and states (they may assign the devices)."""
    held: list[QuarantineRow] = []
    rows: list[AggregateRow] = []

    def hold(item: Any, reason: str, known: bool) -> None:
        row = quarantine_service.hold(item, AGGREGATE, reason, gateway_id, batch_seq, now_ms)
        held.append(row if known else replace(row, device=None))

    for item in items:
        problem = aggregate_codec.problem(item)
        if problem is not None:
            hold(item, problem, False)
            continue
        device = store.get_device(item["d"])
        if device is None or device.gateway != gateway_id:
            hold(item, f"device {item['d']} is not served by gateway {gateway_id}: an aggregate"
                       " never assigns a device", device is not None)
            continue
        status = store.registry(device.id)
        if status is not None and status.status != registry.ACTIVE:
            hold(item, registry.refused_reason(status.status), True)
            continue
        screen = consent_service.Screen.of(device)
        rows.append(AggregateRow(
            device=device.id, incarnation=item["i"], start_ms=item["start"],
            first_seq=item["first_seq"], last_seq=item["last_seq"], window_s=item["window_s"],
            n=item["n"], product=item["p"], raw=item["raw"], m=screen.apply(item["m"]),
            gateway=gateway_id, batch_seq=batch_seq, received_ms=now_ms))
    stored = store.insert_aggregates(rows)
    store.insert_quarantine(held)
    return Stored(stored, len(rows) - stored, held)


def page(store: Store, device_id: str, from_ms: int, to_ms: int,
         limit: int) -> list[AggregateRow]:
    return store.aggregates(device_id, from_ms, to_ms, min(limit, MAX_PAGE))


def raw_kept(store: Store, device_id: str) -> RawKept:
    return store.raw_kept(device_id)


def modes(store: Store) -> list[ModeRow]:
    return store.aggregation_modes()


def set_mode(store: Store, product: str, mode: str, now_ms: int, by: str) -> tuple[
        ModeRow | None, ModeRow]:
    """(before, after) of setting a product's mode; Refused (422) for a bad product or mode.
    Call inside a transaction."""
    if not valid_metric_name(product):
        raise Refused([f"invalid product {product!r}: 1-32 of [a-z0-9_]"])
    try:
        window_s, local = aggregate_codec.parse_mode(mode)
    except ValueError as exc:
        raise Refused([str(exc)]) from None
    before = next((m for m in store.aggregation_modes() if m.product == product), None)
    row = ModeRow(product, aggregate_codec.mode_text(window_s, local), now_ms, by)
    store.set_aggregation_mode(row)
    return before, row
