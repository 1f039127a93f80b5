"""The bundle file: a signed manifest and the bytes of its files, full or as a delta. CPython only
(the factory writes it, the cloud and the gateway check and keep it; the device never sees a
bundle, only the files it fetches one by one by index: protocol.ota).

    "FLB1" | header length (4, big-endian) | header | file 0 | the carried files' bytes
header: canonical JSON {"base":"0.1.0","files":[2,5],"kind":"delta","manifest":512,"v":1}
    file 0 is the signature (64 bytes) followed by the manifest's text (kind "full") or by a
    manifest patch over version `base` (kind "delta": protocol.ota.patch_text), whose size is
    `manifest`. A full bundle carries every file (files = [1..N]); a delta only the files whose
    hash differs from `base` (1-based indices into the new manifest's files, ascending: the
    patch's file lines, in the same order). The files' bytes follow in that order.

verify() is what every holder runs: the release public key's signature over the manifest's
digest (for a delta, over the manifest rebuilt from the base's text: protocol.ota.apply_patch),
the manifest's own rules (protocol.ota.check_manifest: paths, sizes, versions), the header
against the manifest, each carried file's size and sha256, and for a full bundle the image the
files make. It returns one plain reason per failure and never raises for a bad bundle.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import ota, romfs

MAGIC = b"FLB1"
MAX_HEADER_BYTES = 4096
MAX_BUNDLE_BYTES = 8 + MAX_HEADER_BYTES + ota.SIG_BYTES + ota.MAX_MANIFEST_BYTES + ota.MAX_IMAGE_BYTES
KINDS = ("full", "delta")


class BundleError(ValueError):
    """A bundle that cannot even be read (its layout, not its signature)."""


@dataclass(frozen=True)
class Bundle:
    kind: str
    base: str | None
    signature: bytes
    text: str  # the manifest's text (full) or the patch's (delta)
    entries: tuple[tuple[str, int, str], ...]  # (path, size, sha256) of each carried file
    files: dict[int, bytes] = field(default_factory=dict)  # 1-based manifest index -> bytes
    head: dict = field(default_factory=dict)  # type: ignore[type-arg]  # product, version...

    @property
    def signed_manifest(self) -> bytes:
        """File 0, as the device fetches it."""
        return self.signature + self.text.encode()

    @property
    def product(self) -> str:
        return str(self.head["product"])

    @property
    def version(self) -> str:
        return str(self.head["version"])

    @property
    def min_version(self) -> str:
        return str(self.head["min_version"])

    def manifest_text(self, base_text: str | None = None) -> str:
        """The whole manifest's text (a delta needs its base's: ValueError otherwise)."""
        if self.kind == "full":
            return self.text
        if base_text is None:
            raise ValueError(f"a delta over {self.base} needs that version's manifest")
        return ota.apply_patch(base_text, self.text)

    def id(self, base_text: str | None = None) -> str:
        """The offer id (protocol.ota.bundle_id): the same for a version's full and delta."""
        return ota.bundle_id(hashlib.sha256(self.manifest_text(base_text).encode()).digest())

    def file_bytes(self, index: int) -> bytes | None:
        """Bytes of file `index` as the device fetches it (0: file 0), None if not carried."""
        return self.signed_manifest if index == 0 else self.files.get(index)


def read_release_pub(path: Path) -> bytes:
    """The raw 32-byte release public key in `path` (keys/release.pub, as the factory writes
    it); BundleError says what to do when it is missing or damaged."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"no release public key at {path} ({exc.strerror}): copy "
                          "keys/release.pub from the factory") from None
    if len(raw) != 32:
        raise BundleError(f"{path} is not a raw 32-byte Ed25519 public key")
    return raw


def sign_text(text: str, key: Ed25519PrivateKey) -> bytes:
    """The signature of a manifest's text."""
    return key.sign(ota.signed_message(hashlib.sha256(text.encode()).digest()))


def write(signature: bytes, text: str, files: dict[int, bytes], base: str | None = None) -> bytes:
    """Bundle bytes: full when `base` is None (text is the manifest; every file), else a delta
    (text is the patch over `base`; files keyed by their index in the new manifest)."""
    indices = sorted(files)
    header: dict[str, object] = {"v": 1, "kind": "full" if base is None else "delta",
                                 "files": indices, "manifest": ota.SIG_BYTES + len(text.encode())}
    if base is not None:
        ota.parse_version(base)
        header["base"] = base
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return b"".join([MAGIC, struct.pack(">I", len(head)), head, signature, text.encode(),
                     *(files[i] for i in indices)])


def read(data: bytes) -> Bundle:
    """Parse a bundle's layout; BundleError says what is wrong. Checks no signature or hash."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle too large ({len(data)} > {MAX_BUNDLE_BYTES} bytes)")
    if len(data) < 8 or data[:4] != MAGIC:
        raise BundleError("not a fleetloop bundle (no FLB1 magic)")
    (hlen,) = struct.unpack(">I", data[4:8])
    if hlen > MAX_HEADER_BYTES or 8 + hlen > len(data):
        raise BundleError("bundle header length out of bounds")
    try:
        header = json.loads(data[8:8 + hlen])
    except ValueError as exc:
        raise BundleError("bundle header is not JSON") from exc
    kind, base, indices, msize = _check_header(header)
    at = 8 + hlen
    if msize < ota.SIG_BYTES + 2 or msize > ota.SIG_BYTES + ota.MAX_MANIFEST_BYTES or \
            at + msize > len(data):
        raise BundleError("signed manifest size out of bounds")
    signature = data[at:at + ota.SIG_BYTES]
    try:
        text = data[at + ota.SIG_BYTES:at + msize].decode()
        parsed = ota.parse_manifest(text) if kind == "full" else ota.parse_patch(text)
    except (UnicodeError, ValueError) as exc:
        raise BundleError(f"manifest: {exc}") from exc
    at += msize
    if kind == "delta":
        if parsed["base"][0] != base:
            raise BundleError(f"header says base {base}, the patch {parsed['base'][0]}")
        entries = parsed["files"]
        if len(entries) != len(indices):
            raise BundleError("a delta carries exactly the files its patch lists")
        carried = list(zip(indices, entries, strict=True))
    else:
        entries = parsed["files"]
        if indices != list(range(1, len(entries) + 1)):
            raise BundleError("a full bundle must carry every file of its manifest")
        carried = list(zip(indices, entries, strict=True))
    files: dict[int, bytes] = {}
    for i, (path, size, _) in carried:
        if at + size > len(data):
            raise BundleError(f"bundle ends inside {path}")
        files[i] = data[at:at + size]
        at += size
    if at != len(data):
        raise BundleError(f"{len(data) - at} stray bytes after the last file")
    head = {k: parsed[k] for k in ("product", "version", "min_version")}
    return Bundle(kind, base, signature, text, tuple(e for _, e in carried), files, head)


def _check_header(header: object) -> tuple[str, str | None, list[int], int]:
    if not isinstance(header, dict) or header.get("v") != 1:
        raise BundleError("bundle header version unsupported")
    unknown = set(header) - {"v", "kind", "base", "files", "manifest"}
    if unknown:
        raise BundleError(f"unknown bundle header field {sorted(unknown)[0]}")
    kind, base = header.get("kind"), header.get("base")
    if kind not in KINDS:
        raise BundleError("bundle kind must be full or delta")
    if (kind == "delta") != (base is not None):
        raise BundleError("a delta names its base version, a full bundle none")
    if base is not None:
        try:
            ota.parse_version(base)
        except ValueError as exc:
            raise BundleError(f"base: {exc}") from exc
    indices, msize = header.get("files"), header.get("manifest")
    if not isinstance(indices, list) or any(type(i) is not int or i < 1 for i in indices) \
            or indices != sorted(set(indices)) or len(indices) > ota.MAX_FILES:
        raise BundleError("header files must be ascending 1-based file indices, each once")
    if type(msize) is not int:
        raise BundleError("header manifest must be file 0's size")
    return kind, base, indices, msize


def verify(bundle: Bundle, release_pub: bytes, base_text: str | None = None) -> list[str]:
    """Every reason `bundle` must be refused (empty: it is good) under the raw 32-byte release
    public key; a delta's signature needs `base_text`, the base version's manifest text."""
    problems = []
    try:
        text = bundle.manifest_text(base_text)
        manifest = ota.parse_manifest(text)
    except ValueError as exc:
        return [f"manifest: {exc}"]
    try:
        Ed25519PublicKey.from_public_bytes(release_pub).verify(
            bundle.signature, ota.signed_message(hashlib.sha256(text.encode()).digest()))
    except (InvalidSignature, ValueError):
        problems.append("bad signature: not signed by this release key")
    entries = manifest["files"]
    for i, content in bundle.files.items():
        if i > len(entries):
            problems.append(f"file {i}: the manifest has {len(entries)} files")
            continue
        path, size, sha = entries[i - 1]
        if len(content) != size:
            problems.append(f"{path}: size {len(content)}, manifest says {size}")
        elif hashlib.sha256(content).hexdigest() != sha:
            problems.append(f"{path}: sha256 does not match the manifest")
    if bundle.kind == "full" and not problems:
        image = romfs.build([(p, s) for p, s, _ in entries],
                            [bundle.files[i + 1] for i in range(len(entries))])
        if (len(image), hashlib.sha256(image).hexdigest()) != tuple(manifest["image"]):
            problems.append("image: the files do not make the image the manifest names")
    return problems


def open_verified(data: bytes, release_pub: bytes, base_text: str | None = None) -> Bundle:
    """read() + verify(); BundleError with every reason joined by '; '."""
    bundle = read(data)
    problems = verify(bundle, release_pub, base_text)
    if problems:
        raise BundleError("; ".join(problems))
    return bundle
