"""Bundles: ops upload them and the cloud verifies them with the release public key; a delta
needs its base's full bundle first; the same bytes again are no new bundle; what fails is
refused with every reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudkit import ADMIN, api_token, bearer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from updatekit import BUNDLE, FILES, delta, full, upload, write_release_pub

from protocol import bundle as bundle_codec

NEW = {**FILES, "device/agent.mpy": b"agent 0.2.0" * 40}


@pytest.fixture
def release(home: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    write_release_pub(home, key)
    return key


def test_upload_list_and_the_same_bytes_again(client: TestClient, app: FastAPI,
                                              release: Ed25519PrivateKey) -> None:
    data = full(release, version="0.1.0")
    ops = bearer(api_token(app, "ops", "olga"))
    r = upload(client, data, ops)
    assert r.status_code == 201, r.text
    meta = r.json()
    assert {k: meta[k] for k in ("key", "kind", "base", "product", "version", "min_version",
                                 "bytes", "files", "carried")} == {
        "key": "bike-0.1.0", "kind": "full", "base": None, "product": "bike",
        "version": "0.1.0", "min_version": "0.1.0", "bytes": len(data), "files": 3,
        "carried": 3}
    assert meta["id"] == bundle_codec.read(data).id()
    again = upload(client, data, ops)
    assert again.status_code == 200 and again.json() == meta
    technician = bearer(api_token(app, "technician"))
    assert client.get("/api/v1/bundles", headers=technician).json() == [meta]
    assert client.get("/api/v1/bundles/bike-0.1.0", headers=technician).json() == meta
    assert client.get("/api/v1/bundles/bike-9.9.9", headers=technician).status_code == 404
    entries = client.get("/api/v1/audit", params={"action": "bundle.upload"},
                         headers=ADMIN).json()
    assert [(e["actor"], e["target"]) for e in entries] == [("olga", "bundle:bike-0.1.0")]
    # A released version never changes: other bytes under its key are refused.
    other = full(release, version="0.1.0", files=NEW)
    r = upload(client, other)
    assert r.status_code == 409 and "never changes" in r.json()["detail"]


def test_a_bad_bundle_is_refused_with_every_reason(client: TestClient,
                                                   release: Ed25519PrivateKey) -> None:
    data = bytearray(full(release))
    data[-1] ^= 1  # the last file's last byte
    stranger = Ed25519PrivateKey.generate()
    forged = full(stranger, files={**FILES, "protocol/ota.mpy": b"x" * 150})
    for body, want in ((bytes(data), ["protocol/ota.mpy: sha256 does not match the manifest"]),
                       (forged, ["bad signature: not signed by this release key"]),
                       (b"MZ\x90\x00 an executable", ["not a fleetloop bundle (no FLB1 magic)"]),
                       (full(release)[:-10], ["bundle ends inside protocol/ota.mpy"])):
        r = upload(client, body)
        assert r.status_code == 422, r.text
        assert r.json()["reasons"] == want
    both = bytearray(forged)
    both[-1] ^= 1
    reasons = upload(client, bytes(both)).json()["reasons"]
    assert len(reasons) == 2 and reasons[0].startswith("bad signature"), reasons
    assert client.get("/api/v1/bundles", headers=ADMIN).json() == []
    r = client.post("/api/v1/bundles", content=full(release),
                    headers={**ADMIN, "Content-Type": "application/octet-stream"})
    assert r.status_code == 415 and "vnd.fleetloop.bundle" in r.json()["detail"]
    big = b"FLB1" + b"\0" * (bundle_codec.MAX_BUNDLE_BYTES + 1)
    assert upload(client, big).status_code == 413


def test_a_delta_needs_its_base_first(client: TestClient, release: Ed25519PrivateKey) -> None:
    patch = delta(release, FILES, NEW)
    r = upload(client, patch)
    assert r.status_code == 422
    assert "upload the full bundle of bike 0.1.0 first" in r.json()["detail"]
    assert upload(client, full(release, version="0.1.0")).status_code == 201
    r = upload(client, patch)
    assert r.status_code == 201, r.text
    meta = r.json()
    assert (meta["key"], meta["kind"], meta["base"], meta["files"], meta["carried"]) == (
        "bike-0.2.0-from-0.1.0", "delta", "0.1.0", 3, 1)
    # the same offer id as the version's full bundle: the device checks one manifest
    assert upload(client, full(release, files=NEW)).json()["id"] == meta["id"]
    # a delta over another base's text is refused for it
    wrong = delta(release, {**FILES, "device/buffer.mpy": b"other"}, NEW)
    reasons = upload(client, wrong).json()["reasons"]
    assert reasons and "another version" in reasons[0], reasons


def test_no_release_key_is_503(client: TestClient, home: Path) -> None:
    r = upload(client, full(Ed25519PrivateKey.generate()))
    assert r.status_code == 503 and "release.pub" in r.json()["detail"]
    # a file that is no bundle is refused for itself, key or not
    assert client.post("/api/v1/bundles", content=b"x", headers={**ADMIN, **BUNDLE}
                       ).status_code == 422
