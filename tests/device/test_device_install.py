"""The device's update path on its own (no network): download, verify, install, switch, first
boot and commit, with the device's own code on the real MicroPython unix port (mp_install.py;
the gateway is a directory of the files it would serve: otakit.gateway_dir).

Power cuts (SIGKILL) land exactly on the device's writes to flash: at every write of a whole
update, once per trial, for a full manifest and for a delta's patch. Whatever the cut, the
device ends on the new version, committed, with the old slot untouched and nothing left over.
Then the device alone refuses what it must (tampered bytes, signatures, downgrades, foreign
products, unsafe paths, oversized files), and a version that never commits is rolled back by
the first stage."""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))

import otakit  # noqa: E402

from protocol import bundle, ota  # noqa: E402

INTERPRETERS = ["cpython", "micropython"]


def prepared(tmp: Path, name: str, release: otakit.Release, old: otakit.Version,
             new: otakit.Version, file0: bytes) -> otakit.Device:
    root = otakit.device_image(tmp / name, release, old)
    otakit.offer(root, new, file0)
    return otakit.Device("micropython", root, otakit.gateway_dir(root, new, file0))


def assert_updated(dev: otakit.Device, old: otakit.Version, new: otakit.Version) -> None:
    boot = dev.boot_json()
    assert (boot["active"], boot["b"], "trial" in boot) == ("b", new.version, False)
    assert (dev.root / "fw" / "b.img").read_bytes() == new.image
    assert (dev.root / "fw" / "b.man").read_bytes() == new.file0
    assert (dev.root / "fw" / "a.img").read_bytes() == old.image  # never written
    assert (dev.root / "fw" / "floor").read_text() == new.version
    assert sorted(p.name for p in dev.ota.iterdir()) == ["status.json"]
    st = dev.status()
    assert (st["update"], st["version"], st["reason"]) == ("committed", new.version, "")


def test_a_power_cut_at_any_write_of_an_update_ends_on_the_new_version(tmp_path: Path) -> None:
    release = otakit.Release()
    old, new = release.pair()
    patch = ota.patch_text(old.text, new.text)
    flows = {"full": new.file0, "delta": new.signature + patch.encode()}
    cuts = []
    for name, file0 in flows.items():
        clean = prepared(tmp_path, name, release, old, new, file0)
        assert clean.run()["end"] == "committed"
        assert_updated(clean, old, new)
        cuts += [(name, file0, k) for k in range(1, clean.steps + 1)]
    assert len(cuts) >= 100, "at least 100 cuts, spread over every write of an update"

    def trial(cut: tuple[str, bytes, int]) -> tuple[int, dict]:
        name, file0, k = cut
        dev = prepared(tmp_path, f"{name}-{k}", release, old, new, file0)
        end = dev.run(cut_at=k)
        assert dev.cuts == 1, f"{name}: cut {k} never happened"
        assert end["end"] == "committed", f"{name}, cut at write {k}: {end}"
        assert_updated(dev, old, new)
        return k, end

    with ThreadPoolExecutor(2) as pool:  # each trial is a few short MicroPython processes
        results = list(pool.map(trial, cuts))
    assert len(results) == len(cuts)


def _refused(tmp: Path, interpreter: str, release: otakit.Release, old: otakit.Version,
             new: otakit.Version, file0: bytes, floor: str | None = None,
             tamper: int | None = None) -> tuple[otakit.Device, dict]:
    root = otakit.device_image(tmp / "dev", release, old)
    if floor:
        (root / "fw" / "floor").write_text(floor)
    otakit.offer(root, new, file0)
    gateway = otakit.gateway_dir(root, new, file0)
    if tamper is not None:  # one byte of one file changed on its way (at the broker, say)
        data = bytearray((gateway / str(tamper)).read_bytes())
        data[len(data) // 2] ^= 0x01
        (gateway / str(tamper)).write_bytes(bytes(data))
    dev = otakit.Device(interpreter, root, gateway)
    end = dev.run()
    assert end["end"] == "failed", end
    boot = dev.boot_json()
    assert (boot["active"], "trial" in boot) == ("a", False), "still on the old version"
    assert not (root / "fw" / "b.img").exists()
    assert sorted(p.name for p in dev.ota.iterdir()) == ["status.json"], "nothing left over"
    return dev, dev.status()


def _signed(key: Ed25519PrivateKey, text: str) -> bytes:
    return bundle.sign_text(text, key) + text.encode()


def _lines(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


CASES = ["tampered chunk", "tampered manifest", "wrong key", "downgrade", "same version",
         "other product", "path traversal", "absolute path", "oversized file", "below floor",
         "minimum version", "delta for another base"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_the_device_alone_refuses(tmp_path: Path, interpreter: str, case: str) -> None:
    release = otakit.Release()
    old, new = release.pair()
    key = release.key
    file0, floor, tamper = new.file0, None, None
    want = ""
    if case == "tampered chunk":
        tamper, want = new.index("device/m0.mpy"), "sha256 mismatch: device/m0.mpy"
    elif case == "tampered manifest":
        file0 = new.signature + _lines(new.text, "version 1.1.0", "version 1.1.1").encode()
        want = "bad signature"
    elif case == "wrong key":
        file0 = _signed(Ed25519PrivateKey.generate(), new.text)
        want = "bad signature"
    elif case == "downgrade":
        new = otakit.make_version(key, "0.9.0", new.files)
        file0, want = new.file0, "version 0.9.0 is not newer than installed 1.0.0"
    elif case == "same version":
        new = otakit.make_version(key, "1.0.0", new.files)
        file0, want = new.file0, "is not newer than installed"
    elif case == "other product":
        new = otakit.make_version(key, "1.1.0", new.files, product="mirror")
        file0, want = new.file0, "bundle is for mirror, this device is a bike"
    elif case in ("path traversal", "absolute path", "oversized file"):
        size = len(new.files["device/m1.mpy"])
        line = f"file device/m1.mpy {size} "
        bad = {"path traversal": f"file device/../../boot.mpy {size} ",
               "absolute path": f"file /boot.mpy {size} ",
               "oversized file": f"file device/m1.mpy {ota.MAX_FILE_BYTES + 1} "}[case]
        file0 = _signed(key, _lines(new.text, line, bad))
        want = {"path traversal": "unsafe path", "absolute path": "unsafe path",
                "oversized file": "file size must be an int in 0..262144"}[case]
    elif case == "below floor":
        floor, want = "1.2.0", "below the anti-rollback floor 1.2.0"
    elif case == "minimum version":
        new = otakit.make_version(key, "1.1.0", new.files, min_version="1.0.5")
        file0, want = new.file0, "needs at least 1.0.5, installed 1.0.0"
    elif case == "delta for another base":
        other = otakit.make_version(key, "1.0.1", otakit.sample_files(7))
        file0 = new.signature + ota.patch_text(other.text, new.text).encode()
        want = "delta is for 1.0.1, another version is installed"
    dev, status = _refused(tmp_path, interpreter, release, old, new, file0, floor, tamper)
    assert status["update"] == "failure" and want in status["reason"], status
    assert status["id"] == json.loads((dev.ota / "status.json").read_text())["id"]


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_version_that_never_commits_is_rolled_back_by_the_first_stage(
        tmp_path: Path, interpreter: str) -> None:
    release = otakit.Release()
    old, new = release.pair()
    root = otakit.device_image(tmp_path / "dev", release, old)
    otakit.offer(root, new, new.file0)
    dev = otakit.Device(interpreter, root, otakit.gateway_dir(root, new, new.file0))
    for tries in range(1, 4):  # it crashes (or hangs, or loses power) before its heartbeat
        end = dev.run(commit=False)
        assert (end["end"], end["slot"]) == ("trial", "b")
        assert dev.boot_json()["tries"] == tries
    end = dev.run(commit=False)
    assert (end["end"], end["slot"]) == ("idle", "a"), "the previous version boots again"
    boot = dev.boot_json()
    assert (boot["active"], "trial" in boot, "rolled_back" in boot) == ("a", False, False)
    assert (root / "fw" / "floor").read_text() == old.version, "the floor never moved"
    status = dev.status()
    assert status["update"] == "rolled_back"
    assert status["reason"] == "1.1.0 did not commit in 3 boots (last reset: none)"
    # The same offer comes back retained on every connect: decided, it is not taken again.
    assert dev.run()["end"] == "idle"
    assert hashlib.sha256((root / "fw" / "a.img").read_bytes()).digest() == \
        hashlib.sha256(old.image).digest()


def test_the_device_copies_of_the_protocol_agree_with_it() -> None:
    """device/update.py and device/install.py keep copies of protocol.ota's constants (the agent
    does not import protocol; the installer checks the signature before it does)."""
    from device import install, update

    assert (install._SIG_BYTES, install._SIGN_PREFIX) == (ota.SIG_BYTES, ota.SIGN_PREFIX)
    assert install._PATCH_HEAD == (ota.MAGIC_LINE + "\nbase ").encode()
    assert (update._HEAD, update._DATA, update._BUSY) == (
        ota.CHUNK_HEAD, ota.CHUNK_DATA, ota.CHUNK_BUSY)
    assert update._WINDOW == 4 * ota.CHUNK_BYTES
    for word in (update.DOWNLOADING, update.REBOOTING, update.COMMITTED, update.ROLLED_BACK,
                 update.FAILURE):
        assert word in ota.DEVICE_STATUSES
