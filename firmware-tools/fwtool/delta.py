"""`fleetloop fw diff`: a delta bundle from two full bundles of one product.

A delta carries the new version's manifest as a patch over the old one's
(protocol.ota.patch_text: the new head lines, only the changed file lines, "drop" for removed
files) and only the files whose hash changed, each indexed by its position in the new
manifest. It reuses the new version's signature unchanged: the device rebuilds the whole new
manifest from the one it runs and checks that signature over it, so a delta needs no signing
key. A one-module change costs that module and a few hundred bytes (one_module_figures).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from protocol import bundle, ota

from .errors import FwToolError, RefusedError
from .keys import KeyLayout, public_key_raw
from .release import build_release
from .slots import open_full
from .sources import firmware_version, package_dir

# What one_module_figures appends to a module: a new module-level name changes its bytecode
# (a comment would not: mpy-cross drops it).
CHANGE = "\nRELEASE_NOTE = 'one module changed'\n"


@dataclass(frozen=True)
class Delta:
    """A delta bundle and what it saves against the new version's full bundle."""

    data: bytes
    product: str
    base: str
    version: str
    files: tuple[str, ...]  # paths it carries (changed or added)
    dropped: tuple[str, ...]  # paths the new version no longer has
    full_bytes: int  # the new version's full bundle

    @property
    def saved(self) -> int:
        return self.full_bytes - len(self.data)

    def as_json(self) -> dict[str, object]:
        return {"product": self.product, "base": self.base, "version": self.version,
                "files": list(self.files), "dropped": list(self.dropped),
                "bytes": len(self.data), "full_bytes": self.full_bytes, "saved": self.saved}


def make_delta(old: bytes, new: bytes, release_pub: bytes) -> Delta:
    """The delta that takes a device from full bundle `old` to full bundle `new`, both verified
    under the raw release public key. RefusedError when either is bad, they are different
    products, `new` is not newer, or a device running `old` may not install `new`."""
    base = _open(old, release_pub, "OLD")
    target = _open(new, release_pub, "NEW")
    if base.product != target.product:
        raise RefusedError(f"OLD is a {base.product} bundle, NEW a {target.product} bundle")
    if ota.parse_version(target.version) <= ota.parse_version(base.version):
        raise RefusedError(f"NEW ({target.version}) is not newer than OLD ({base.version})")
    if ota.parse_version(target.min_version) > ota.parse_version(base.version):
        raise RefusedError(f"NEW needs at least {target.min_version}: a device running OLD "
                           f"({base.version}) may not install it")
    patch = ota.patch_text(base.text, target.text)
    parsed = ota.parse_patch(patch)
    index = {path: i + 1 for i, (path, _, _) in enumerate(target.entries)}
    carried = {index[path]: target.files[index[path]] for path, _, _ in parsed["files"]}
    data = bundle.write(target.signature, patch, carried, base=base.version)
    problems = bundle.verify(bundle.read(data), release_pub, base.text)
    if problems:  # the inputs were verified: this would be a bug here, never a bad input
        raise FwToolError("the delta does not verify: " + "; ".join(problems))
    return Delta(data, target.product, base.version, target.version,
                 tuple(path for path, _, _ in parsed["files"]), tuple(parsed["drop"]), len(new))


def _open(data: bytes, release_pub: bytes, name: str) -> bundle.Bundle:
    try:
        return open_full(data, release_pub)
    except RefusedError as exc:
        raise RefusedError(f"{name}: {exc}") from exc


def one_module_figures(home: Path, product: str, module: str | None = None) -> dict[str, object]:
    """Build `product` twice from a temporary copy of the device package, the second time with
    one module changed (default: the product's own profile), and measure the delta between
    them: full bytes, delta bytes, the changed file's bytes and delta / full. Signs with HOME's
    release key; used by the tests and the benchmark."""
    module = module or f"profiles/{product}.py"
    dev_src = package_dir("device")
    old_version = firmware_version(dev_src)
    major, minor, patch = ota.parse_version(old_version)
    new_version = f"{major}.{minor}.{patch + 1}"
    with tempfile.TemporaryDirectory(prefix="fleetloop-delta-") as tmp:
        copy = Path(tmp) / "device"
        shutil.copytree(dev_src, copy, ignore=shutil.ignore_patterns("__pycache__"))
        old = build_release(home, product, old_version, device_src=copy)
        source = copy / module
        if not source.is_file():
            raise FwToolError(f"no module {module} in the device package")
        source.write_text(source.read_text() + CHANGE)
        new = build_release(home, product, new_version, device_src=copy)
    delta = make_delta(old.data, new.data, public_key_raw(KeyLayout.of_home(home).release_pub))
    changed = dict(new.files)[f"device/{module[:-3]}.mpy"]
    return {"product": product, "module": f"device/{module}", "from": old_version,
            "to": new_version, "full_bytes": len(new.data), "delta_bytes": len(delta.data),
            "changed_file_bytes": len(changed), "files": list(delta.files),
            "ratio": round(len(delta.data) / len(new.data), 4)}
