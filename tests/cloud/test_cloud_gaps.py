"""Gaps: a gateway replaces a refused batch by a signed gap; the chain goes on, visibly."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace

import httpx
from cloudkit import ADMIN, T0, GatewaySim, counts, rec, register
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from protocol.batch import (
    GAP_CONTENT_TYPE,
    GAP_PATH,
    HEADER_GATEWAY,
    HEADER_SIGNATURE,
    MAX_GAP_BYTES,
    Gap,
    seal_gap,
)

REASON = "batch refused: batch fields are wrong"


def refused_batch(gateway: GatewaySim) -> tuple[Gap, str]:
    """Send a batch the cloud refuses (400) at the next place of the chain; the gap for it."""
    obj = gateway.batch_obj([rec("bike-1", 2)], extra=1)
    sealed = gateway.seal_raw(obj)
    r = gateway.post(sealed)
    assert r.status_code == 400, r.text
    gap = Gap(gateway=gateway.id, seq=obj["seq"], prev=gateway.prev, digest=sealed.digest,
              records=1, states=0, status=400, reason=r.json()["detail"], created_ms=T0 + 5)
    return gap, sealed.digest


def post_gap(gateway: GatewaySim, gap: Gap, key: Ed25519PrivateKey | None = None,
             **headers: str) -> httpx.Response:
    body, signature = seal_gap(gap, key or gateway.key)
    h = {"Content-Type": GAP_CONTENT_TYPE, HEADER_GATEWAY: gateway.id,
         HEADER_SIGNATURE: signature, "Authorization": f"Bearer {gateway.token}", **headers}
    return gateway.client.post(GAP_PATH, content=body, headers=h)


def test_a_gap_takes_the_refused_batchs_place_and_the_chain_goes_on(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    assert gateway.push([rec("bike-1", 1)]).status_code == 200
    gap, refused_digest = refused_batch(gateway)
    assert gap.reason == REASON
    r = post_gap(gateway, gap)
    assert r.status_code == 200, r.text
    assert r.json() == {"seq": 2, "replay": False}
    # the next batch chains to the refused batch's digest
    gateway.seq, gateway.prev = gap.seq, refused_digest
    r = gateway.push([rec("bike-1", 3)])
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 0, "seq": 3}
    assert counts(app)["batches"] == 3 and counts(app)["telemetry"] == 2
    # the same gap again is a replay; a different statement for that place is a conflict
    assert post_gap(gateway, gap).json() == {"seq": 2, "replay": True}
    assert post_gap(gateway, replace(gap, digest="b" * 64)).status_code == 409
    assert counts(app)["batches"] == 3


def test_gaps_are_visible(client: TestClient, gateway: GatewaySim) -> None:
    register(client, "gw-2", Ed25519PrivateKey.generate())
    gap, refused_digest = refused_batch(gateway)
    post_gap(gateway, gap)
    r = client.get("/api/v1/gateways", headers=ADMIN)
    assert r.status_code == 200
    by_id = {g["id"]: g for g in r.json()}
    assert by_id["gw-2"]["gaps"] == 0 and by_id["gw-2"]["latest_gaps"] == []
    gw1 = by_id["gw-1"]
    assert (gw1["gaps"], gw1["last_seq"], gw1["last_batch_ms"]) == (1, 1, T0)
    expected = {"seq": 1, "digest": refused_digest, "records": 1, "states": 0, "status": 400,
                "reason": REASON, "created_ms": T0 + 5, "received_ms": T0}
    assert gw1["latest_gaps"] == [expected]
    assert client.get("/api/v1/gateways/gw-1/gaps", headers=ADMIN).json() == [expected]
    assert client.get("/api/v1/gateways/gw-2/gaps", headers=ADMIN).json() == []
    assert client.get("/api/v1/gateways/gw-9/gaps", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {gateway.token}"}
                      ).status_code == 403
    html = client.get("/", headers=ADMIN).text
    (row,) = re.findall(r'<tr data-gateway="gw-1">(.*?)</tr>', html, re.S)
    assert "batch 1 (1 records): 400 " + REASON in row


def test_gaps_out_of_chain_are_conflicts(app: FastAPI, gateway: GatewaySim) -> None:
    gap, _ = refused_batch(gateway)
    for wrong in (replace(gap, seq=2), replace(gap, prev="a" * 64)):
        r = post_gap(gateway, wrong)
        assert r.status_code == 409, r.text
    assert counts(app)["batches"] == 0


def test_gap_refusals(app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    gap, _ = refused_batch(gateway)
    other_key = Ed25519PrivateKey.generate()
    register(client, "gw-2", other_key)
    assert post_gap(gateway, gap, key=other_key).status_code == 400  # not gw-1's key
    r = post_gap(gateway, replace(gap, gateway="gw-2"))  # signed by gw-1, claims gw-2
    assert r.status_code == 400 and "gw-2" in r.json()["detail"]
    assert post_gap(gateway, gap, **{HEADER_SIGNATURE: ""}).status_code == 400
    assert post_gap(gateway, gap, Authorization="Bearer nope").status_code == 401
    assert post_gap(gateway, gap, **{HEADER_GATEWAY: "gw-2"}).status_code == 403
    body, signature = seal_gap(gap, gateway.key)
    r = client.post(GAP_PATH, content=body + b" " * MAX_GAP_BYTES,
                    headers={HEADER_GATEWAY: "gw-1", HEADER_SIGNATURE: signature,
                             "Authorization": f"Bearer {gateway.token}"})
    assert r.status_code == 413
    for garbage in (b"{}", b"[" * 3000, b"not json"):  # signed, but not a gap
        signature = base64.b64encode(gateway.key.sign(garbage)).decode()
        r = client.post(GAP_PATH, content=garbage,
                        headers={HEADER_GATEWAY: "gw-1", HEADER_SIGNATURE: signature,
                                 "Authorization": f"Bearer {gateway.token}"})
        assert r.status_code == 400, r.text
    assert counts(app)["batches"] == 0


def test_a_gap_reason_that_is_no_text_is_refused(client: TestClient, gateway: GatewaySim) -> None:
    """protocol.batch refuses a reason no UTF-8 response or database could hold."""
    gap, _ = refused_batch(gateway)
    obj = replace(gap, reason="bad \ud800").to_obj()
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()  # "\ud800" escaped
    headers = {HEADER_GATEWAY: "gw-1", "Authorization": f"Bearer {gateway.token}",
               HEADER_SIGNATURE: base64.b64encode(gateway.key.sign(body)).decode()}
    r = client.post(GAP_PATH, content=body, headers=headers)
    assert r.status_code == 400 and "UTF-8" in r.text, r.text
    assert client.get("/api/v1/gateways/gw-1/gaps", headers=ADMIN).json() == []


def test_a_gap_reason_with_a_nul_is_stored_escaped(client: TestClient, gateway: GatewaySim) -> None:
    """PostgreSQL's text cannot hold a NUL: the gap is stored (on every backend) with the NUL
    as its escape, and the chain goes on; no 500 that the gateway would retry forever."""
    gap, _ = refused_batch(gateway)
    r = post_gap(gateway, replace(gap, reason="refused: \x00 in a field"))
    assert r.status_code == 200, r.text
    (stored,) = client.get("/api/v1/gateways/gw-1/gaps", headers=ADMIN).json()
    assert stored["reason"] == "refused: \\x00 in a field"
