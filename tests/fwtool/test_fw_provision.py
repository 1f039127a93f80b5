"""fwtool.provision: the device image layout, data/ preservation and refusals."""

from __future__ import annotations

import json
import shutil
import stat
import struct
from pathlib import Path

import pytest
from fwtool.errors import FwToolError, MissingKeysError, UsageError
from fwtool.keys import KeyLayout, generate
from fwtool.provision import package_dir, parse_broker, provision
from fwtool.romfs import build_image
from fwtool.trajectory import unit_of

import protocol
from protocol import bundle


@pytest.fixture
def fake_device(tmp_path: Path) -> Path:
    """A stand-in device package with every kind of file provision must keep or skip."""
    root = tmp_path / "src" / "device"
    files = {
        "__init__.py": '__version__ = "1.2.3"\n',
        "main.py": "print('main')\n",
        "profiles/__init__.py": "",
        "profiles/bike.py": "X = 1\n",
        "profiles/mirror.py": "X = 2\n",
        "profiles/engine.py": "X = 3\n",
        "port_cpython.py": "# cpython-only: uses threading\nimport threading\n",
        "tests/test_buffer.py": "def test(): pass\n",
        "profiles/tests/test_bike.py": "",
        "__pycache__/main.cpython-311.pyc": "",
        "README.md": "docs\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    shutil.copyfile(package_dir("device") / "profiles" / "cmapss_fd001.bin",
                    root / "profiles" / "cmapss_fd001.bin")
    (root / "boot.py").write_text("import device.main\n")
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    generate(h, ["gw-1"], ["bike-1", "mirror-1"])
    return h


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_image_layout(home: Path, fake_device: Path) -> None:
    out = provision(home, "bike-1", "bike", "localhost", 8883, device_src=fake_device)
    assert out == home / "devices" / "bike-1"
    # Bytecode only (a .py beside its .mpy would be preferred by MicroPython), and only the
    # bike's own profile.
    assert _files(out / "lib" / "device") == [
        "__init__.mpy", "main.mpy", "profiles/__init__.mpy", "profiles/bike.mpy"]
    assert _files(out / "lib" / "protocol") == sorted(f"{m}.mpy" for m in protocol.DEVICE_MODULES)
    # The firmware as slot a of a bundle signed with the home's release key (what runs), the
    # first stage that picks the slot at the root, and no ROMFS image of the old layout.
    assert _files(out / "fw") == ["a.img", "a.man", "boot.json", "floor"]
    assert json.loads((out / "fw" / "boot.json").read_text()) == {"active": "a", "a": "1.2.3"}
    assert (out / "fw" / "floor").read_text() == "1.2.3"
    image = (out / "fw" / "a.img").read_bytes()
    assert image.startswith(b"\xd2\xcd\x31") and b"profiles" in image
    lib = sorted((p.relative_to(out / "lib").as_posix(), p.read_bytes())
                 for p in (out / "lib").rglob("*") if p.is_file())
    assert build_image(out / "lib") == image  # lib/ is slot a's files, loose
    signed = (out / "fw" / "a.man").read_bytes()
    release_pub = KeyLayout.of_home(home).release_pub.read_bytes()
    opened = bundle.open_verified(bundle.write(signed[:64], signed[64:].decode(),
                                               {i + 1: d for i, (_, d) in enumerate(lib)}),
                                  release_pub)
    assert (opened.product, opened.version) == ("bike", "1.2.3")
    assert not (out / "romfs.img").exists() and not (out / "assets").exists()
    assert (out / "boot.mpy").read_bytes().startswith(b"M")  # an .mpy, not a source
    assert _files(out / "certs") == sorted(
        ["ca.der", "ca.pem", "cert.der", "cert.pem", "key.der", "key.pem"])
    assert _files(out / "keys") == ["config.pub", "record.key", "release.pub"]
    assert (out / "data").is_dir() and not any((out / "data").iterdir())
    identity = json.loads((out / "identity.json").read_text())
    assert identity == {"id": "bike-1", "profile": "bike", "broker_host": "localhost",
                        "broker_port": 8883, "fw": "1.2.3"}
    lay = KeyLayout.of_home(home)
    assert (out / "certs/key.der").read_bytes() == lay.device_key_der("bike-1").read_bytes()
    assert (out / "certs/cert.der").read_bytes() == lay.device_cert_der("bike-1").read_bytes()
    assert (out / "certs/ca.der").read_bytes() == lay.ca_cert_der.read_bytes()
    assert (out / "keys/config.pub").read_bytes() == lay.config_pub.read_bytes()
    assert (out / "keys/release.pub").read_bytes() == lay.release_pub.read_bytes()
    for name in ("key.der", "key.pem"):
        assert stat.S_IMODE((out / "certs" / name).stat().st_mode) == 0o600
    assert (out / "keys/record.key").read_bytes() == lay.device_record_key("bike-1").read_bytes()
    assert stat.S_IMODE((out / "keys/record.key").stat().st_mode) == 0o600
    assert not list(out.glob(".staging*"))


def test_reprovision_replaces_code_and_keeps_data(home: Path, fake_device: Path, tmp_path: Path) -> None:
    out = tmp_path / "img"
    provision(home, "mirror-1", "mirror", "localhost", 8883, out, device_src=fake_device)
    (out / "data" / "buffer.bin").write_bytes(b"records")
    (out / "data" / "sub").mkdir()
    (out / "data" / "sub" / "seq").write_text("41")
    (out / "lib" / "device" / "stale.mpy").write_text("old\n")
    (out / "fw" / "b.img").write_bytes(b"an update's slot")
    (out / "romfs.img").write_bytes(b"the layout before slots")
    before = (out / "lib" / "device" / "main.mpy").read_bytes()
    (fake_device / "main.py").write_text("print('v2')\n")

    provision(home, "mirror-1", "engine", "10.0.0.5", 1884, out, device_src=fake_device)

    assert (out / "data" / "buffer.bin").read_bytes() == b"records"
    assert (out / "data" / "sub" / "seq").read_text() == "41"
    assert not (out / "lib" / "device" / "stale.mpy").exists()
    assert not (out / "fw" / "b.img").exists() and not (out / "romfs.img").exists()
    assert (out / "lib" / "device" / "main.mpy").read_bytes() != before
    assert _files(out / "lib" / "device" / "profiles") == ["__init__.mpy", "engine.mpy"]
    assert (out / "assets" / "cmapss_fd001.bin").is_file()  # now an engine
    identity = json.loads((out / "identity.json").read_text())
    assert (identity["profile"], identity["broker_host"], identity["broker_port"]) == (
        "engine", "10.0.0.5", 1884)


def test_real_device_package(home: Path) -> None:
    out = provision(home, "bike-1", "bike", "localhost", 8883)
    real = package_dir("device")
    copied = _files(out / "lib" / "device")
    assert all("tests/" not in f and "__pycache__" not in f for f in copied)
    shipped = [p.with_suffix(".mpy") for p in real.rglob("*.py")]
    assert set(copied) <= {str(p.relative_to(real)) for p in shipped}
    assert "boot.mpy" not in copied and (out / "boot.mpy").is_file()
    assert "profiles/cmapss_fd001.bin" not in copied and not (out / "assets").exists()
    assert {"profiles/engine.mpy", "profiles/mirror.mpy"}.isdisjoint(copied)
    assert json.loads((out / "identity.json").read_text())["id"] == "bike-1"


def test_an_engine_image_carries_only_its_own_engine(home: Path, tmp_path: Path) -> None:
    generate(home, ["gw-1"], ["engine-7"])
    out = provision(home, "engine-7", "engine", "localhost", 8883, tmp_path / "img")
    data = (out / "assets" / "cmapss_fd001.bin").read_bytes()
    full = (package_dir("device") / "profiles" / "cmapss_fd001.bin").read_bytes()
    magic, columns, size, rows = struct.unpack_from("<4sHHI", data)
    start = 12 + 8 * columns
    units = {struct.unpack_from("<H", data, at)[0] for at in range(start, len(data), size)}
    assert magic == b"CMT1" and units == {unit_of("engine-7")}
    assert 128 <= rows <= 362 and len(data) == start + rows * size  # FD001 runs to failure
    assert len(data) < len(full) // 50
    assert data[start:] in full  # the real rows, cut out unchanged
    # Code and data apart: the trajectory is in no slot, so an update never touches it.
    assert data[start:start + 4 * size] not in (out / "fw" / "a.img").read_bytes()


@pytest.mark.parametrize("profile", ["car", "", "Bike"])
def test_unknown_profile_refused(home: Path, profile: str) -> None:
    with pytest.raises(UsageError, match="unknown profile"):
        provision(home, "bike-1", profile, "localhost", 8883)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-a", "x" * 65])
def test_invalid_id_refused(home: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid device id"):
        provision(home, bad, "bike", "localhost", 8883)


def test_missing_keys_refused(tmp_path: Path, home: Path) -> None:
    with pytest.raises(MissingKeysError, match="fleetloop fw keygen"):
        provision(tmp_path / "empty", "bike-1", "bike", "localhost", 8883)
    with pytest.raises(MissingKeysError, match="--device engine-1"):
        provision(home, "engine-1", "engine", "localhost", 8883)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_bad_port_refused(home: Path, port: int) -> None:
    with pytest.raises(UsageError, match="port"):
        provision(home, "bike-1", "bike", "localhost", port)


def test_foreign_directory_refused(home: Path, fake_device: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "lib").mkdir()
    (precious / "lib" / "thesis.txt").write_text("do not delete")
    with pytest.raises(UsageError, match="not a device image"):
        provision(home, "bike-1", "bike", "localhost", 8883, precious, device_src=fake_device)
    assert (precious / "lib" / "thesis.txt").exists()


def test_other_devices_image_refused(home: Path, fake_device: Path, tmp_path: Path) -> None:
    out = tmp_path / "img"
    provision(home, "bike-1", "bike", "localhost", 8883, out, device_src=fake_device)
    with pytest.raises(UsageError, match="holds the image of 'bike-1'"):
        provision(home, "mirror-1", "mirror", "localhost", 8883, out, device_src=fake_device)


def test_missing_protocol_module_refused(home: Path, fake_device: Path, tmp_path: Path) -> None:
    (tmp_path / "proto").mkdir()
    with pytest.raises(FwToolError, match="DEVICE_MODULES"):
        provision(home, "bike-1", "bike", "localhost", 8883, tmp_path / "img",
                  device_src=fake_device, protocol_src=tmp_path / "proto")


@pytest.mark.parametrize(("text", "expected"), [
    ("localhost:8883", ("localhost", 8883)),
    ("10.0.0.1:1", ("10.0.0.1", 1)),
    ("[::1]:8883", ("::1", 8883)),
])
def test_parse_broker(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["localhost", "localhost:", ":8883", "h:x", "h:70000"])
def test_parse_broker_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_broker(text)
