"""CPython-side helpers for the update tests: a test release (key, versions as file sets made into
signed manifests and slot images with the protocol's own writers), a device image holding
version 1 in slot a, and a driver that runs one step of the device's update code
(mp_install.py) under a real interpreter and cuts its power (SIGKILL) at a chosen write."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import bundle, ota, romfs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
MICROPYTHON = str(BIN / "micropython") if (BIN / "micropython").exists() else "micropython"
DRIVER = str(HERE / "mp_install.py")
PRODUCT = "bike"


@dataclass
class Version:
    version: str
    files: dict[str, bytes]
    text: str = ""
    signature: bytes = b""
    image: bytes = b""

    @property
    def paths(self) -> list[str]:
        return sorted(self.files)

    @property
    def file0(self) -> bytes:
        return self.signature + self.text.encode()

    def index(self, path: str) -> int:
        return self.paths.index(path) + 1


def make_version(key: Ed25519PrivateKey, version: str, files: dict[str, bytes],
                 product: str = PRODUCT, min_version: str = "0.1.0") -> Version:
    paths = sorted(files)
    image = romfs.build([(p, len(files[p])) for p in paths], [files[p] for p in paths])
    manifest = {"product": product, "version": version, "min_version": min_version,
                "build": {"test": "1"}, "image": (len(image), hashlib.sha256(image).hexdigest()),
                "files": [(p, len(files[p]), hashlib.sha256(files[p]).hexdigest()) for p in paths]}
    text = ota.manifest_text(manifest)
    return Version(version, dict(files), text, bundle.sign_text(text, key), image)


def sample_files(seed: int, count: int = 8, most: int = 1800) -> dict[str, bytes]:
    """Stand-ins for compiled modules (the installer never runs them), small enough that a
    trial takes a fraction of a second and large enough that each spans several chunks."""
    rnd = random.Random(seed)
    files = {}
    for i in range(count):
        name = f"device/m{i}.mpy" if i < count - 2 else f"protocol/p{i}.mpy"
        files[name] = rnd.randbytes(rnd.randint(most // 2, most))
    return files


@dataclass
class Release:
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def pub(self) -> bytes:
        return self.key.public_key().public_bytes_raw()

    def pair(self, changed: int = 2) -> tuple[Version, Version]:
        """Version 1.0.0 and 1.1.0 with `changed` modules changed, one added, one dropped."""
        old = sample_files(1)
        new = dict(old)
        for path in sorted(old)[:changed]:
            new[path] = old[path][::-1] + b"v2"
        new["device/added.mpy"] = b"\x4d" * 700
        del new[sorted(old)[-1]]
        return make_version(self.key, "1.0.0", old), make_version(self.key, "1.1.0", new)


def device_image(root: Path, release: Release, installed: Version) -> Path:
    """A device image holding `installed` in slot a, as provisioning leaves it."""
    fw = root / "fw"
    fw.mkdir(parents=True)
    (fw / "a.img").write_bytes(installed.image)
    (fw / "a.man").write_bytes(installed.file0)
    (fw / "boot.json").write_text(json.dumps({"active": "a", "a": installed.version}))
    (fw / "floor").write_text(installed.version)
    (root / "keys").mkdir()
    (root / "keys" / "release.pub").write_bytes(release.pub)
    (root / "data" / "ota").mkdir(parents=True)
    return root


def offer(root: Path, new: Version, file0: bytes, rollout: str = "r-1") -> dict:
    """What the agent writes when the gateway's offer arrives (device/update.py). The offer
    names the manifest file 0 carries (the new version's for a patch)."""
    text = file0[ota.SIG_BYTES:].decode()
    if "\nbase " in text:
        text = new.text
    body = {"v": 1, "id": ota.bundle_id(hashlib.sha256(text.encode()).digest()),
            "product": PRODUCT, "version": new.version, "size": len(file0), "rollout": rollout}
    ota_dir = root / "data" / "ota"
    (ota_dir / "offer.json").write_bytes(json.dumps(body).encode())
    (ota_dir / "status.json").write_text(json.dumps(
        {"id": body["id"], "version": new.version, "rollout": rollout, "update": "downloading",
         "progress": 0, "reason": ""}))
    return body


def gateway_dir(root: Path, new: Version, file0: bytes) -> Path:
    """What the gateway serves for this offer: GATEWAY/<index> holds file <index>'s bytes."""
    gw = root.parent / (root.name + ".gateway")
    gw.mkdir(exist_ok=True)
    (gw / "0").write_bytes(file0)
    for i, path in enumerate(new.paths, start=1):
        (gw / str(i)).write_bytes(new.files[path])
    return gw


def interpreter_argv(interpreter: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    path = f"{REPO}:{HERE}"
    if interpreter == "micropython":
        env["MICROPYPATH"] = path
        # From sources, which the interpreter compiles in its heap: a roomy heap here. The
        # 64 KB budget of an install from compiled modules is measured by `fleetloop bench heap`.
        return [MICROPYTHON, "-X", "heapsize=512K", DRIVER], env
    env["PYTHONPATH"] = path
    return [sys.executable, DRIVER], env


def run_start(interpreter: str, root: Path, gateway: Path, commit: bool = True,
              cut_at: int | None = None) -> tuple[dict | None, int]:
    """One power-on (mp_install.py); SIGKILL it at its `cut_at`-th write (1-based). Returns
    (the "done" event, or None when cut, and the writes seen)."""
    argv, env = interpreter_argv(interpreter)
    extra = ["commit"] if commit else []
    proc = subprocess.Popen([*argv, str(root), str(gateway), PRODUCT, str(cut_at or 0), *extra],
                            env=env, cwd=str(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    done = None
    try:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:  # MicroPython prints a traceback on stdout
                raise AssertionError(line.decode() + proc.stdout.read().decode()) from None
            if event.get("event") == "cut":
                proc.kill()  # the power goes, right after that write
                proc.wait()
                return None, cut_at or 0
            if event.get("event") == "done":
                done = event
    finally:
        if proc.poll() is None:
            proc.wait(60)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0 and done is not None, err
    return done, done["steps"]


@dataclass
class Device:
    """A device image, powered on again and again until its update is over."""

    interpreter: str
    root: Path
    gateway: Path
    steps: int = 0  # writes counted over all its starts
    cuts: int = 0
    starts: int = 0

    @property
    def ota(self) -> Path:
        return self.root / "data" / "ota"

    def boot_json(self) -> dict:
        return json.loads((self.root / "fw" / "boot.json").read_text())

    def status(self) -> dict:
        return json.loads((self.ota / "status.json").read_text())

    def run(self, cut_at: int | None = None, commit: bool = True, most: int = 8) -> dict:
        """Power on until the update ends ("committed", "failed", "idle", or "trial" without
        commit); one cut at the `cut_at`-th write of the whole run."""
        for _ in range(most):
            local = cut_at - self.steps if cut_at is not None and cut_at > self.steps else None
            done, seen = run_start(self.interpreter, self.root, self.gateway, commit, local)
            self.steps += seen
            self.starts += 1
            if done is None:
                self.cuts += 1
                cut_at = None
                continue
            if done["end"] != "reset":
                return done
        raise AssertionError("the device never finished its update")


def copy_image(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    gw = src.parent / (src.name + ".gateway")
    if gw.is_dir():
        shutil.copytree(gw, dst.parent / (dst.name + ".gateway"))
    return dst
