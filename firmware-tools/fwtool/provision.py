"""Build a device image: the directory a flash of a real board would hold (see docs/factory.md).

    <out>/boot.mpy            the first stage (device/boot.py): picks the slot and runs it
    <out>/fw/a.img            slot a: the firmware as a ROMFS image, from a signed full bundle
    <out>/fw/a.man            slot a's signed manifest; fw/boot.json, fw/floor: see fwtool.slots
    <out>/lib/device/...      the same firmware's files loose (.mpy): the fallback of a board
    <out>/lib/protocol/...    without ROMFS
    <out>/assets/             the device's own data, never in a bundle: an engine's trajectory
    <out>/certs/              ca/cert/key in DER (MicroPython tls) and PEM (CPython ssl)
    <out>/keys/               config.pub, release.pub (raw 32-byte Ed25519); record.key (the
                              device's 32-byte record key, 0600: it tags its records)
    <out>/identity.json       id, profile, broker_host, broker_port, fw (the slot's version)
    <out>/data/               the device's own state: created once, never touched again

The firmware is a release bundle (fwtool.release): built here for the device's product from
the installed device package, at its __version__, and signed with the home's release key, or
given (a released bundle, which must be for that product). Code and data are separate: an
update replaces the slot, never assets/. An engine's image carries only its own engine's
trajectory (fwtool.trajectory). Re-provisioning swaps the firmware (slots included: the image
then holds only the provisioned version), certs/, keys/, assets/ and identity.json, and leaves
data/ alone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import FwToolError, MissingKeysError, UsageError
from .fsutil import PRIVATE_DIR, PRIVATE_FILE, PUBLIC_FILE, SyncedBatch, ensure_dir, write_file
from .keys import KeyLayout, check_id, public_key_raw
from .mpy import compile_tree
from .release import build_release
from .slots import install_slot, open_full, write_lib
from .sources import (
    BOOT,
    CPYTHON_ONLY,
    DEFAULT_FW,
    PROFILES,
    ROOT_MODULES,
    device_sources,
    firmware_version,
    package_dir,
)
from .trajectory import extract, unit_of

__all__ = ["BOOT", "CPYTHON_ONLY", "DEFAULT_FW", "PROFILES", "device_sources",
           "firmware_version", "package_dir", "provision"]

REPLACED = ("lib", "certs", "keys", "fw", "assets")
BOOT_MODULE = "boot.mpy"
LEGACY_ROMFS = "romfs.img"  # what images had before slots: removed by the next provision
FIRMWARE_FILES = (BOOT_MODULE, BOOT, "first_stage.mpy", "first_stage.py", LEGACY_ROMFS)  # replaced (or removed) on every provision
ENGINE_DATA = Path("profiles") / "cmapss_fd001.bin"  # every unit in the package; one per image
ENGINE_ASSET = Path("assets") / "cmapss_fd001.bin"  # in the image: device/profiles/engine.py
IDENTITY = "identity.json"


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
    bundle: bytes | None = None,
    keep_firmware: bool = False,
) -> Path:
    """Write (or refresh) the image of ``device_id``; return its directory.

    ``device_src``/``protocol_src`` default to the installed ``device``/``protocol`` packages.
    ``bundle``: a full release bundle for ``profile`` to install (default: one built from
    those sources at the device package's version, signed with HOME's release key).
    ``keep_firmware``: an image that has its slots keeps them (and what updates installed in
    them): only the keys, certificates and identity are refreshed (`fleetloop device run`).
    """
    check_request(device_id, profile, broker_host, broker_port)
    home = Path(home)
    lay = KeyLayout.of_home(home)
    sources = key_sources(lay, device_id)
    dev_src = Path(device_src) if device_src else package_dir("device")
    proto_src = Path(protocol_src) if protocol_src else package_dir("protocol")
    out = Path(out) if out is not None else home / "devices" / device_id
    check_target(out, device_id)
    if keep_firmware and bundle is None and (out / "fw" / "a.img").is_file():
        return _refresh_identity(out, device_id, profile, broker_host, broker_port, sources)
    if bundle is None:
        bundle = build_release(home, profile, firmware_version(dev_src), device_src=dev_src,
                               protocol_src=proto_src).data
    release_pub = public_key_raw(lay.release_pub)
    version = open_full(bundle, release_pub, profile).version  # refused before any write

    # Every file of the new parts made durable by one sync before the swap, as a batch does,
    # instead of a fsync for each of the firmware's ~35 files.
    files = SyncedBatch()

    def firmware(staging: Path) -> None:
        stage_firmware(staging, bundle, release_pub, dev_src, profile, files.write)
        if profile == "engine":
            stage_engine_data(staging, dev_src, device_id)

    ident = identity(device_id, profile, broker_host, broker_port, version)
    try:
        staging = stage_image(out, ident, sources, firmware, files.write)
    except BaseException:
        files.discard()
        raise
    try:
        files.commit()
    except BaseException:
        files.discard()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_in(out, staging)
    return out


def _refresh_identity(out: Path, device_id: str, profile: str, broker_host: str,
                      broker_port: int, sources: dict[str, Path]) -> Path:
    """Keys, certificates and identity.json anew; the firmware (slots, first stage, lib/,
    assets/) as the device has it. identity.json names the version of its active slot."""
    try:
        boot = json.loads((out / "fw" / "boot.json").read_text())
        version = str(boot[boot["active"]])
    except (OSError, ValueError, KeyError, TypeError):
        version = json.loads((out / IDENTITY).read_text()).get("fw", DEFAULT_FW)
    ident = identity(device_id, profile, broker_host, broker_port, version)
    staging = stage_image(out, ident, sources, None)
    swap_in(out, staging, firmware=False)
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

    ``firmware`` fills the boot module, fw/, lib/ and assets/ (None: a host image, which has
    none).
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


def swap_in(out: Path, staging: Path, firmware: bool = True) -> None:
    """Replace the firmware (boot module, fw/, lib/), assets/, certs/, keys/ and identity.json
    of ``out`` by those in ``staging`` (what staging lacks is removed: a host image has no
    firmware, a bike no assets); data/ is never touched. ``firmware=False``: only certs/,
    keys/ and identity.json."""
    try:
        for name in REPLACED if firmware else ("certs", "keys"):
            shutil.rmtree(out / name, ignore_errors=True)
            if (staging / name).is_dir():
                os.rename(staging / name, out / name)
        for name in (*FIRMWARE_FILES, IDENTITY) if firmware else (IDENTITY,):
            if (staging / name).is_file():
                os.replace(staging / name, out / name)
            elif (out / name).is_file():
                (out / name).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ensure_dir(out / "data")


def stage_firmware(dest: Path, bundle: bytes, release_pub: bytes, dev_src: Path,
                   product: str, write: FileWriter = write_file) -> str:
    """The boot module, slot a (fwtool.slots.install_slot) and lib/ of a full bundle for
    ``product`` under ``dest``; returns the bundle's version. RefusedError for a bundle that
    fails verification or is for another product."""
    opened = install_slot(dest, bundle, release_pub, product=product, write=write)
    write_lib(dest, opened, write)
    stage_boot(dest, dev_src)
    return opened.version


def stage_boot(dest: Path, dev_src: Path) -> None:
    """boot.mpy and first_stage.mpy at ``dest``, compiled from the device package's boot.py and
    first_stage.py (when it has them): outside the slots, never replaced by an update."""
    for name in ROOT_MODULES:
        if (dev_src / name).is_file():
            shutil.copyfile(dev_src / name, dest / name)
    compile_tree(dest, recursive=False)


def stage_engine_data(dest: Path, dev_src: Path, device_id: str) -> None:
    """assets/ of an engine: the trajectory of the one engine this device replays (not the
    whole data set), kept out of every bundle: an update carries code only."""
    data = dev_src / ENGINE_DATA
    if not data.is_file():
        raise FwToolError(f"engine data not found at {data}")
    ensure_dir(dest / ENGINE_ASSET.parent, 0o755)
    write_file(dest / ENGINE_ASSET, extract(data.read_bytes(), unit_of(device_id)), PUBLIC_FILE)


def parse_broker(value: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> (host, port); UsageError otherwise."""
    host, sep, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port_text.isdigit():
        raise UsageError(f"broker must be host:port, got {value!r}")
    port = int(port_text)
    _check_broker(host, port)
    return host, port


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


def _copy_keys(sources: dict[str, Path], staging: Path, write: FileWriter) -> None:
    ensure_dir(staging / "certs", PRIVATE_DIR)
    ensure_dir(staging / "keys", 0o755)
    for rel, src in sources.items():
        private = rel.startswith("certs/key.") or rel == "keys/record.key"
        write(staging / rel, src.read_bytes(), PRIVATE_FILE if private else PUBLIC_FILE)
