"""Update bundles for the gateway tests, made with protocol.bundle and the home's release key
(fwtool keygen writes it). Any bytes serve as files: the gateway never runs them."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from protocol import bundle as bundle_codec
from protocol import ota, romfs


def release_key(home: Path) -> Ed25519PrivateKey:
    key = load_pem_private_key((home / "keys" / "release.key.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def some_files(seed: int, sizes: dict[str, int]) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {path: rng.randbytes(n) for path, n in sizes.items()}


def manifest(product: str, version: str, files: dict[str, bytes]) -> str:
    paths = sorted(files)
    image = romfs.build([(p, len(files[p])) for p in paths], [files[p] for p in paths])
    return ota.manifest_text({
        "product": product, "version": version, "min_version": "0.1.0",
        "build": {"micropython": "1.28.0", "mpy_cross": "1.29.0"},
        "image": (len(image), hashlib.sha256(image).hexdigest()),
        "files": [(p, len(files[p]), hashlib.sha256(files[p]).hexdigest()) for p in paths]})


def full(home: Path, product: str, version: str, files: dict[str, bytes]) -> tuple[bytes, str]:
    """(bundle bytes, manifest text) of a full bundle carrying `files`."""
    text = manifest(product, version, files)
    paths = sorted(files)
    data = bundle_codec.write(bundle_codec.sign_text(text, release_key(home)), text,
                              {i + 1: files[p] for i, p in enumerate(paths)})
    return data, text


def delta(home: Path, base_text: str, product: str, version: str,
          files: dict[str, bytes]) -> tuple[bytes, str]:
    """(bundle bytes, new manifest text) of a delta from `base_text` to `files`."""
    text = manifest(product, version, files)
    base = ota.parse_manifest(base_text)
    old = {p: sha for p, _, sha in base["files"]}
    paths = sorted(files)
    changed = {i + 1: files[p] for i, p in enumerate(paths)
               if old.get(p) != hashlib.sha256(files[p]).hexdigest()}
    data = bundle_codec.write(bundle_codec.sign_text(text, release_key(home)),
                              ota.patch_text(base_text, text), changed, base=base["version"])
    return data, text


def file0(data: bytes) -> bytes:
    return bundle_codec.read(data).signed_manifest


def offer_id(text: str) -> str:
    return ota.bundle_id(hashlib.sha256(text.encode()).digest())


def entry(device: str, key: str, data: bytes, text: str, base: str | None = None,
          rollout: str = "r-1") -> dict[str, object]:
    """One entry of GET /api/v1/gateway/updates for `device`."""
    b = bundle_codec.read(data)
    return {"device": device, "bundle": key, "base": base,
            "offer": {"v": 1, "id": offer_id(text), "product": b.product,
                      "version": b.version, "size": len(b.signed_manifest),
                      "rollout": rollout}}
