from __future__ import annotations

import base64
import json
import zlib
from dataclasses import replace
from typing import Any

from cloudkit import ADMIN, GatewaySim, counts, rec, register, state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.services.identity import _RUN_GAP, _runs
from cloud.services.ingest import _with_records
from cloud.store import DeviceRow
from protocol.batch import GENESIS, MAX_COMPRESSED_BYTES, SealedBatch

EMPTY = {"gateways": 1, "batches": 0, "devices": 0, "telemetry": 0, "configs": 0, "quarantine": 0}


def telemetry_rows(app: FastAPI, device: str) -> list[tuple[int, str, int]]:
    with app.state.db.connection() as store:
        return [(r.seq, r.gateway, r.batch_seq) for r in store.telemetry(device, 0, 0, 10000)]


def test_stores_batch_and_rows_keep_gateway_and_batch_seq(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    r = gateway.push([rec("bike-1", 1), rec("bike-1", 2), rec("mirror-1", 1)])
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": 3, "duplicates": 0, "quarantined": 0, "seq": 1}
    r = gateway.push([rec("bike-1", 3)])
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 0, "seq": 2}
    assert telemetry_rows(app, "bike-1") == [(1, "gw-1", 1), (2, "gw-1", 1), (3, "gw-1", 2)]
    assert counts(app) == {**EMPTY, "batches": 2, "devices": 2, "telemetry": 4}


def test_each_device_seq_stored_once_across_overlapping_batches(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    assert gateway.push([rec("bike-1", s) for s in range(1, 6)]).json()["stored"] == 5
    r = gateway.push([rec("bike-1", s) for s in range(3, 9)] + [rec("bike-1", 8)])
    assert r.json() == {"stored": 3, "duplicates": 4, "quarantined": 0, "seq": 2}
    assert [row[0] for row in telemetry_rows(app, "bike-1")] == list(range(1, 9))
    device = client.get("/api/v1/devices", headers=ADMIN).json()[0]
    assert (device["records"], device["last_seq"]) == (8, 8)


def test_resent_batch_is_idempotent(app: FastAPI, gateway: GatewaySim) -> None:
    gateway.push([rec("bike-1", 1), rec("bike-1", 2)])
    gateway.push([rec("bike-1", 3)])
    before = counts(app)
    for sealed in gateway.sent:  # the gateway lost our answers and sends everything again
        r = gateway.post(sealed)
        assert r.status_code == 200
        assert r.json()["stored"] == 0
        assert r.json()["duplicates"] == len(json.loads(zlib.decompress(sealed.body))["records"])
    assert counts(app) == before
    assert gateway.push([rec("bike-1", 4)]).json() == {"stored": 1, "duplicates": 0, "quarantined": 0, "seq": 3}


def refused(
    app: FastAPI, gateway: GatewaySim, sealed: SealedBatch, status: int, reason: str
) -> None:
    """Sent with the right headers for `gateway`, refused with `status`, nothing stored."""
    before = counts(app)
    r = gateway.post(sealed, **{"X-Fleetloop-Gateway": gateway.id})
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"]
    assert counts(app) == before


def test_bad_signature_stores_nothing(app: FastAPI, gateway: GatewaySim) -> None:
    sealed = gateway.seal([rec("bike-1", 1)])
    other = gateway.seal([rec("bike-1", 2)])
    forged = SealedBatch(sealed.gateway, sealed.seq, sealed.digest, sealed.body, other.signature)
    refused(app, gateway, forged, 400, "bad signature")
    assert counts(app) == EMPTY


def test_batch_signed_by_an_unregistered_key_is_refused(app: FastAPI, gateway: GatewaySim) -> None:
    stranger = Ed25519PrivateKey.generate()
    refused(app, gateway, gateway.seal([rec("bike-1", 1)], key=stranger), 400, "bad signature")


def test_tampered_body_is_refused(app: FastAPI, gateway: GatewaySim) -> None:
    sealed = gateway.seal([rec("bike-1", 1, power=100)])
    canon = zlib.decompress(sealed.body).replace(b'"power":100', b'"power":999')
    tampered = SealedBatch(
        sealed.gateway, sealed.seq, sealed.digest, zlib.compress(canon), sealed.signature
    )
    refused(app, gateway, tampered, 400, "bad signature")
    garbage = SealedBatch(sealed.gateway, sealed.seq, sealed.digest, b"not zlib", sealed.signature)
    refused(app, gateway, garbage, 400, "zlib")


def test_batch_naming_another_gateway_is_refused(app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    register(client, "gw-2", Ed25519PrivateKey.generate())
    refused(app, gateway, gateway.seal([rec("bike-1", 1)], gateway="gw-2"), 400, "gw-2")


def test_missing_signature_header(app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    sealed = gateway.seal([rec("bike-1", 1)])
    headers = sealed.headers(gateway.token)
    del headers["X-Fleetloop-Signature"]
    r = client.post("/api/v1/ingest", content=sealed.body, headers=headers)
    assert r.status_code == 400 and "X-Fleetloop-Signature" in r.json()["detail"]
    assert counts(app) == EMPTY


def test_broken_chain_gap_and_rewritten_history_are_conflicts(app: FastAPI, gateway: GatewaySim) -> None:
    refused(app, gateway, gateway.seal([rec("bike-1", 1)], prev="a" * 64), 409, "does not chain")
    refused(app, gateway, gateway.seal([rec("bike-1", 1)], seq=2), 409, "gap")
    gateway.push([rec("bike-1", 1)])
    gateway.push([rec("bike-1", 2)])
    refused(app, gateway, gateway.seal([rec("bike-1", 3)], seq=4), 409, "expected batch 3")
    refused(app, gateway, gateway.seal([rec("bike-1", 3)], prev=GENESIS), 409, "does not chain")
    # a different batch under an old seq (history rewritten) is not a replay
    rewritten = gateway.seal([rec("bike-1", 7)], seq=2, prev=gateway.sent[0].digest)
    refused(app, gateway, rewritten, 409, "differs")
    # the chain is intact: the real next batch goes in
    assert gateway.push([rec("bike-1", 3)]).json()["seq"] == 3


def test_out_of_range_record_is_quarantined_and_blocks_nobody(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    # The fault: one device's record with "t":9223372036854775808 made the cloud refuse its
    # gateway's whole batch on every retry, stopping every device behind that gateway.
    bad = {**rec("bike-1", 2), "t": 9223372036854775808}
    huge_seq = {**rec("bike-1", 3), "s": 2**63}
    batch = [rec("bike-1", 1), bad, huge_seq, rec("bike-1", 4), rec("mirror-1", 1)]
    r = gateway.push_raw(batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": 3, "duplicates": 0, "quarantined": 2, "seq": 1}
    assert [row[0] for row in telemetry_rows(app, "bike-1")] == [1, 4]
    assert [row[0] for row in telemetry_rows(app, "mirror-1")] == [1]
    held = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert [(q["seq"], q["kind"], q["gateway"], q["batch_seq"]) for q in held] == [
        (None, "record", "gw-1", 1),  # 2**63 fits no BIGINT: kept in the body only
        (2, "record", "gw-1", 1),
    ]
    assert held[0]["reason"] == "seq must be an int in 1..2**53-1"
    assert held[1]["reason"] == "t must be an int in 0..2**53-1"
    assert '"t":9223372036854775808' in held[1]["body"]
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).json()["quarantined"] == 2
    # the same batch again is a replay; the chain goes on, other devices keep flowing
    assert gateway.post(gateway.sent[0]).status_code == 200
    assert gateway.push([rec("mirror-1", 2), rec("bike-1", 5)]).json()["stored"] == 2
    assert counts(app)["quarantine"] == 2


def test_out_of_range_batch_fields_are_still_refused(app: FastAPI, gateway: GatewaySim) -> None:
    # a batch's own fields are batch-level: 400, nothing stored
    for fields, reason in (({"seq": 2**70}, "batch seq"), ({"seq": 2**53}, "batch seq"),
                           ({"created": 2**63}, "created"), ({"v": 4}, "version")):
        refused(app, gateway, gateway.seal_raw(gateway.batch_obj(**fields)), 400, reason)


def test_oversized_body_is_refused(app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    sealed = gateway.seal([rec("bike-1", 1)])
    body = sealed.body + b"\0" * MAX_COMPRESSED_BYTES
    r = client.post("/api/v1/ingest", content=body, headers=sealed.headers(gateway.token))
    assert r.status_code == 413
    assert counts(app) == EMPTY


def test_states_become_reported_state_and_auto_create_devices(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    s1 = state("mirror-1", t=10, profile="mirror", fw="0.1.0", impl="micropython",
               config_version=0, config_status="none")
    s2 = state("mirror-1", t=20, profile="mirror", fw="0.1.0", impl="micropython",
               config_version=2, config_status="rejected", reason="interval_ms out of range")
    r = gateway.push([], [s2, s1])  # order in the batch does not matter; device time does
    assert r.json() == {"stored": 0, "duplicates": 0, "quarantined": 0, "seq": 1}
    (device,) = client.get("/api/v1/devices", headers=ADMIN).json()
    assert device["id"] == "mirror-1" and device["product"] == "mirror"
    assert device["reported"] == s2
    assert device["records"] == 0 and device["last_seen_ms"] == 20
    cfg = client.get("/api/v1/devices/mirror-1/config", headers=ADMIN).json()
    assert cfg == {
        "desired": None,
        "reported": {"config_version": 2, "config_status": "rejected",
                     "reason": "interval_ms out of range"},
    }
    # an older state arriving later does not win
    gateway.push([], [s1])
    assert client.get("/api/v1/devices/mirror-1", headers=ADMIN).json()["reported"] == s2


def test_signature_header_is_base64_checked(app: FastAPI, gateway: GatewaySim) -> None:
    sealed = gateway.seal([rec("bike-1", 1)])
    r = gateway.post(sealed, **{"X-Fleetloop-Signature": "%%%"})
    assert r.status_code == 400 and "base64" in r.json()["detail"]
    short = base64.b64encode(b"x" * 10).decode()
    assert gateway.post(sealed, **{"X-Fleetloop-Signature": short}).status_code == 400
    assert counts(app) == EMPTY


def test_deeply_nested_items_never_fail_the_cloud(app: FastAPI, gateway: GatewaySim) -> None:
    good = json.dumps(rec("bike-1", 1), sort_keys=True, separators=(",", ":"))
    for depth in (50, 900, 5000):
        nested = "[" * depth + "1" + "]" * depth
        canon = (
            f'{{"created":1,"gateway":"gw-1","prev":"{gateway.prev}","records":[{good},{nested}],'
            f'"seq":{gateway.seq + 1},"states":[],"v":1}}'
        ).encode()
        sealed = gateway.seal_bytes(canon)
        r = gateway.post(sealed)
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:  # parsed: the nested item is quarantined, the record stored
            assert r.json()["quarantined"] == 1
            gateway.seq, gateway.prev = gateway.seq + 1, sealed.digest
        else:  # deeper than the JSON parser goes: the batch itself is unreadable
            assert "nested too deeply" in r.json()["detail"]
    assert gateway.seq >= 1 and counts(app)["telemetry"] == 1


# -- the per-record shortcuts of the ingest path give what their plain loops give ------------

def _with_records_by_sort(
    device: DeviceRow, recs: list[dict[str, Any]], inserted: int, order: dict[int, int]
) -> DeviceRow:
    """The merge of the newest metrics as a plain sort, the reference for _with_records."""
    metrics = dict(device.last_metrics)
    incarnation, last_seq = device.incarnation, device.last_seq
    top = (order.get(incarnation, -1), last_seq)
    for place, _, r in sorted(((order.get(r.get("i", 0), -1), r["s"]), n, r)
                              for n, r in enumerate(recs)):
        if place > top:
            metrics.update(r.get("m", {}))
            top, incarnation, last_seq = place, r.get("i", 0), r["s"]
    return replace(device, records=device.records + inserted, incarnation=incarnation,
                   last_seq=last_seq, last_metrics=metrics,
                   last_seen_ms=max([device.last_seen_ms or 0, *(r["t"] for r in recs)]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0, 5, 9]), st.integers(1, 40), st.integers(1, 10**6),
                       st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 9)),
                       st.booleans()), max_size=12),
    st.sampled_from([0, 5, 9, 11]), st.integers(0, 45), st.booleans(),
)
def test_the_newest_metrics_are_those_of_the_sort(
    rows: list[tuple[int, int, int, dict[str, int], bool]], incarnation: int, last_seq: int,
    rising: bool,
) -> None:
    if rising:  # the common case the shortcut takes: one incarnation, seqs rising
        rows = sorted({s: (rows[0][0], s, t, m, c) for _, s, t, m, c in rows}.values(),
                      key=lambda row: row[1]) if rows else rows
    recs = [{"i": i, "s": s, "t": t, **({"c": {"tier": "usage"}} if c else {"m": m})}
            for i, s, t, m, c in rows]
    device = DeviceRow(id="bike-1", product=None, created_ms=0, incarnation=incarnation,
                       last_seq=last_seq, last_metrics={"a": -1}, last_seen_ms=1)
    order = {9: 0, 0: 1, 5: 2}
    got = _with_records(device, recs, len(recs), order)
    assert got == (_with_records_by_sort(device, recs, len(recs), order) if recs else device)


@given(st.lists(st.integers(1, 10**5), unique=True, max_size=30))
def test_seq_runs_are_those_of_the_loop(seqs: list[int]) -> None:
    seqs.sort()
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and seq - runs[-1][1] <= _RUN_GAP:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    assert _runs(seqs) == runs
