"""Helpers for the update tests: bundles made with protocol.bundle and a test release key (any
bytes as files: no mpy-cross), a fleet of enrolled bikes behind a gateway, and the states a
device sends while it updates."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cloudkit import ADMIN, INCARNATION, T0, GatewaySim, enrol, record_key, signed, signed_state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from protocol import bundle as bundle_codec
from protocol import ota, romfs

BUNDLE = {"Content-Type": "application/vnd.fleetloop.bundle"}
FILES = {"device/agent.mpy": b"agent 0.1.0" * 40, "device/buffer.mpy": b"buffer" * 30,
         "protocol/ota.mpy": b"ota" * 50}


def write_release_pub(home: Path, key: Ed25519PrivateKey) -> None:
    path = home / "keys" / "release.pub"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def manifest(product: str, version: str, files: dict[str, bytes],
             min_version: str | None = None) -> str:
    paths = sorted(files)
    image = romfs.build([(p, len(files[p])) for p in paths], [files[p] for p in paths])
    return ota.manifest_text({
        "product": product, "version": version, "min_version": min_version or "0.1.0",
        "build": {"micropython": "1.28.0"},
        "image": (len(image), hashlib.sha256(image).hexdigest()),
        "files": [(p, len(files[p]), hashlib.sha256(files[p]).hexdigest()) for p in paths]})


def full(key: Ed25519PrivateKey, product: str = "bike", version: str = "0.2.0",
         files: dict[str, bytes] | None = None, min_version: str | None = None) -> bytes:
    files = FILES if files is None else files
    text = manifest(product, version, files, min_version)
    paths = sorted(files)
    return bundle_codec.write(bundle_codec.sign_text(text, key), text,
                              {i + 1: files[p] for i, p in enumerate(paths)})


def delta(key: Ed25519PrivateKey, old: dict[str, bytes], new: dict[str, bytes],
          product: str = "bike", base: str = "0.1.0", version: str = "0.2.0") -> bytes:
    base_text, new_text = manifest(product, base, old), manifest(product, version, new)
    paths = sorted(new)
    changed = {i + 1: new[p] for i, p in enumerate(paths) if old.get(p) != new[p]}
    return bundle_codec.write(bundle_codec.sign_text(new_text, key),
                              ota.patch_text(base_text, new_text), changed, base=base)


def upload(client: TestClient, data: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/v1/bundles", content=data, headers={**BUNDLE, **(headers or ADMIN)})


def offer_id(text_or_bundle: bytes) -> str:
    return bundle_codec.read(text_or_bundle).id()


class Fleet:
    """Bikes enrolled with record keys, on `fw`, assigned to the gateway by one heartbeat
    each (heap_low 30000, resets 0); `beat` and `say` send their states, `records` data."""

    def __init__(self, client: TestClient, gateway: GatewaySim, ids: list[str],
                 fw: str = "0.1.0", product: str = "bike") -> None:
        self.client, self.gateway = client, gateway
        self.keys = {d: record_key(100 + n) for n, d in enumerate(ids)}
        self.seq = dict.fromkeys(ids, 0)
        self.t = T0
        for d in ids:
            enrol(client, d, self.keys[d], product)
        self.push(states=[self.state(d, why="heartbeat", fw=fw) for d in ids])

    def state(self, device: str, **fields: Any) -> str:
        self.t += 1000
        body = {"t": self.t, "fw": "0.1.0", "resets": 0, "reset_cause": "none",
                "heap_low": 30000, **fields}
        return signed_state(device, self.keys[device], incarnation=INCARNATION, **body)

    def push(self, records: list[str] | None = None, states: list[str] | None = None) -> None:
        r = self.gateway.push(records or [], states or [])
        assert r.status_code == 200, r.text
        assert r.json()["quarantined"] == 0, r.text

    def say(self, device: str, word: str, offer: str, version: str = "0.2.0",
            **fields: Any) -> None:
        """An update state of the device (why = update)."""
        body = {"why": "update", "update": word, "update_id": offer, "update_version": version,
                "update_progress": 100, "update_reason": "", **fields}
        self.push(states=[self.state(device, **body)])

    def records(self, device: str, n: int = 1) -> None:
        out = []
        for _ in range(n):
            self.seq[device] += 1
            self.t += 1000
            out.append(signed(device, self.seq[device], self.keys[device], t=self.t))
        self.push(records=out)
