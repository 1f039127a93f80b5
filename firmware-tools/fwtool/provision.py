"""Build a device image: the directory a flash of a real board would hold (see docs/factory.md).

    <out>/romfs.img           the firmware as a ROMFS image: lib/ below, packed (what runs)
    <out>/boot.mpy            mounts romfs.img and runs device.main (device/boot.py)
    <out>/lib/device/...      the repo's device package as .mpy (no tests, no CPython-only files)
    <out>/lib/protocol/...    protocol.DEVICE_MODULES as .mpy
    <out>/certs/              ca/cert/key in DER (MicroPython tls) and PEM (CPython ssl)
    <out>/keys/               config.pub, release.pub (raw 32-byte Ed25519); record.key (the
                              device's 32-byte record key, 0600: it tags its records)
    <out>/identity.json       id, profile, broker_host, broker_port, fw
    <out>/data/               the device's own state: created once, never touched again

An engine's image carries only its own engine's trajectory (fwtool.trajectory). lib/ is the
fallback the boot module uses when no ROMFS image is mapped (a board without a ROMFS partition):
the same bytecode, but loaded into the heap (docs/factory.md). Re-provisioning swaps the
firmware, certs/, keys/ and identity.json and leaves data/ alone. Package sources are read as
files, never imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import protocol

from .errors import FwToolError, MissingKeysError, UsageError
from .fsutil import PRIVATE_DIR, PRIVATE_FILE, PUBLIC_FILE, ensure_dir, write_file
from .keys import KeyLayout, check_id
from .mpy import compile_tree
from .romfs import build_image
from .trajectory import extract, unit_of

PROFILES = ("bike", "mirror", "engine")
DEFAULT_FW = "0.1.0"
CPYTHON_ONLY = "# cpython-only"
SKIP_DIRS = frozenset({"__pycache__", "tests", "test"})
REPLACED = ("lib", "certs", "keys")
BOOT = "boot.py"  # device/boot.py: the image's boot module, at the image root
ROMFS_IMAGE = "romfs.img"
FIRMWARE_FILES = (ROMFS_IMAGE, "boot.mpy", BOOT)  # replaced (or removed) on every provision
ENGINE_DATA = Path("profiles") / "cmapss_fd001.bin"  # every unit in the package; one per image
IDENTITY = "identity.json"
_VERSION_RE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


FileWriter = Callable[[Path, bytes, int], None]


def provision(
    home: Path,
    device_id: str,
    profile: str,
    broker_host: str,
    broker_port: int,
    out: Path | None = None,
    *,
    device_src: Path | None = None,
    protocol_src: Path | None = None,
    compiled: bool = True,
) -> Path:
    """Write (or refresh) the image of ``device_id``; return its directory.

    ``device_src``/``protocol_src`` default to the installed ``device``/``protocol`` packages.
    ``compiled`` ships .mpy bytecode (what fits a 64 KB heap) instead of .py sources.
    """
    check_request(device_id, profile, broker_host, broker_port)
    home = Path(home)
    sources = key_sources(KeyLayout.of_home(home), device_id)
    dev_src = Path(device_src) if device_src else package_dir("device")
    proto_src = Path(protocol_src) if protocol_src else package_dir("protocol")
    out = Path(out) if out is not None else home / "devices" / device_id
    check_target(out, device_id)

    def firmware(staging: Path) -> None:
        stage_code(staging, dev_src, proto_src, compiled=compiled)
        if profile == "engine":
            stage_engine_data(staging, dev_src, device_id)
        if compiled:
            pack_romfs(staging)

    ident = identity(device_id, profile, broker_host, broker_port, firmware_version(dev_src))
    staging = stage_image(out, ident, sources, firmware)
    swap_in(out, staging)
    return out


def check_request(device_id: str, profile: str, broker_host: str, broker_port: int) -> None:
    """InvalidIdError/UsageError for a bad id, profile or broker address."""
    check_id(device_id, "device")
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    _check_broker(broker_host, broker_port)


def identity(device_id: str, profile: str, broker_host: str, broker_port: int, fw: str) -> bytes:
    """The bytes of an image's identity.json."""
    ident = {"id": device_id, "profile": profile, "broker_host": broker_host,
             "broker_port": broker_port, "fw": fw}
    return (json.dumps(ident, indent=2) + "\n").encode()


def stage_image(out: Path, ident: bytes, sources: dict[str, Path],
                firmware: Callable[[Path], None] | None, write: FileWriter = write_file) -> Path:
    """Build the new parts of the image at ``out`` in its staging directory and return it.

    ``firmware`` fills lib/, the boot module and romfs.img (None: a host image, which has none).
    Nothing outside the staging directory changes until swap_in; on failure it is removed.
    """
    ensure_dir(out)
    staging = out / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        ensure_dir(staging)
        if firmware is not None:
            firmware(staging)
        _copy_keys(sources, staging, write)
        write(staging / IDENTITY, ident, PUBLIC_FILE)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def swap_in(out: Path, staging: Path) -> None:
    """Replace the firmware, certs/, keys/ and identity.json of ``out`` by those in ``staging``
    (what staging lacks is removed: a host image has no firmware); data/ is never touched."""
    try:
        for name in REPLACED:
            shutil.rmtree(out / name, ignore_errors=True)
            if (staging / name).is_dir():
                os.rename(staging / name, out / name)
        for name in (*FIRMWARE_FILES, IDENTITY):
            if (staging / name).is_file():
                os.replace(staging / name, out / name)
            elif (out / name).is_file():
                (out / name).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ensure_dir(out / "data")


def stage_code(dest: Path, dev_src: Path, proto_src: Path, *, compiled: bool = True) -> None:
    """lib/device, lib/protocol and the boot module under ``dest``, compiled when asked.
    The same for every profile: only an engine's data differs (stage_engine_data)."""
    _copy_tree(dev_src, dest / "lib" / "device")
    _copy_protocol(proto_src, dest / "lib" / "protocol")
    if (dev_src / BOOT).is_file():
        shutil.copyfile(dev_src / BOOT, dest / BOOT)
    if compiled:
        compile_tree(dest / "lib")
        if (dest / BOOT).is_file():
            compile_tree(dest, recursive=False)


def stage_engine_data(dest: Path, dev_src: Path, device_id: str) -> None:
    """The trajectory of the one engine this device replays (not the whole data set)."""
    data = dev_src / ENGINE_DATA
    if not data.is_file():
        raise FwToolError(f"engine data not found at {data}")
    lib = dest / "lib" / "device"
    write_file(lib / ENGINE_DATA, extract(data.read_bytes(), unit_of(device_id)), PUBLIC_FILE)


def pack_romfs(dest: Path) -> None:
    """romfs.img of ``dest``/lib (after the engine's data, which it carries)."""
    write_file(dest / ROMFS_IMAGE, build_image(dest / "lib"), PUBLIC_FILE)


def parse_broker(value: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> (host, port); UsageError otherwise."""
    host, sep, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port_text.isdigit():
        raise UsageError(f"broker must be host:port, got {value!r}")
    port = int(port_text)
    _check_broker(host, port)
    return host, port


def package_dir(name: str) -> Path:
    """Directory of a package, found without importing it."""
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise FwToolError(f"cannot find the {name!r} package; is fleetloop installed?")
    return Path(locations[0])


def firmware_version(device_src: Path) -> str:
    """``__version__`` of device/__init__.py if it declares one, else DEFAULT_FW."""
    init = device_src / "__init__.py"
    found = _VERSION_RE.search(init.read_text()) if init.is_file() else None
    return found.group(1) if found else DEFAULT_FW


def device_sources(root: Path) -> Iterator[Path]:
    """The modules of the device package that go into its firmware, relative to ``root``: .py
    sources that are not CPython-only, without the boot module (it sits at the image's root)
    and without data (the engine's trajectory is cut per device: stage_engine_data)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            if name.endswith(".py") and str(rel) != BOOT and not _cpython_only(path):
                yield rel


def _cpython_only(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return CPYTHON_ONLY in f.readline()


def _check_broker(host: str, port: int) -> None:
    if not host or any(c.isspace() for c in host):
        raise UsageError(f"invalid broker host {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"invalid broker port {port!r}: use 1-65535")


def key_sources(lay: KeyLayout, device_id: str) -> dict[str, Path]:
    """Image-relative name -> file in keys/; MissingKeysError names what is absent."""
    sources = {
        "certs/ca.der": lay.ca_cert_der, "certs/ca.pem": lay.ca_cert_pem,
        "certs/cert.der": lay.device_cert_der(device_id),
        "certs/cert.pem": lay.device_cert_pem(device_id),
        "certs/key.der": lay.device_key_der(device_id),
        "certs/key.pem": lay.device_key_pem(device_id),
        "keys/config.pub": lay.config_pub, "keys/release.pub": lay.release_pub,
        "keys/record.key": lay.device_record_key(device_id),
    }
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise MissingKeysError(
            f"missing keys for {device_id!r}: {', '.join(missing)}; run "
            f"`fleetloop fw keygen --home {lay.root.parent} --device {device_id}` first"
        )
    return sources


def check_target(out: Path, device_id: str) -> None:
    """Refuse to clobber a directory that is not this device's image."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    ident = out / IDENTITY
    try:
        current = json.loads(ident.read_text())["id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{out} is not empty and is not a device image; choose another --out") from exc
    if current != device_id:
        raise UsageError(f"{out} holds the image of {current!r}, not {device_id!r}; "
                         "choose another --out")


def _copy_tree(src: Path, dest: Path) -> None:
    if not src.is_dir():
        raise FwToolError(f"device package not found at {src}")
    ensure_dir(dest, 0o755)
    for rel in device_sources(src):
        target = dest / rel
        ensure_dir(target.parent, 0o755)
        shutil.copyfile(src / rel, target)


def _copy_protocol(src: Path, dest: Path) -> None:
    ensure_dir(dest, 0o755)
    for name in protocol.DEVICE_MODULES:
        module = src / f"{name}.py"
        if not module.is_file():
            raise FwToolError(f"protocol module {module} listed in DEVICE_MODULES is missing")
        shutil.copyfile(module, dest / module.name)


def _copy_keys(sources: dict[str, Path], staging: Path, write: FileWriter) -> None:
    ensure_dir(staging / "certs", PRIVATE_DIR)
    ensure_dir(staging / "keys", 0o755)
    for rel, src in sources.items():
        private = rel.startswith("certs/key.") or rel == "keys/record.key"
        write(staging / rel, src.read_bytes(), PRIVATE_FILE if private else PUBLIC_FILE)
