"""`fleetloop fw build` (fwtool.release): what a product's bundle holds, its signed manifest, and
that the same inputs give the same bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from fwtool.cli import app
from fwtool.keys import KeyLayout
from fwtool.release import build_release, stamp_version
from fwtool.sources import package_dir
from typer.testing import CliRunner

import protocol
from protocol import bundle, ota, romfs

runner = CliRunner()


def fw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_same_inputs_give_the_same_bytes(keyed_home: Path, tmp_path: Path) -> None:
    home = str(keyed_home)
    for out in ("one", "two"):
        code, _, err = fw("build", "--home", home, "--product", "engine", "--version", "1.4.2",
                          "--out", str(tmp_path / out / "engine.flb"))
        assert code == 0, err
    first = (tmp_path / "one" / "engine.flb").read_bytes()
    assert first == (tmp_path / "two" / "engine.flb").read_bytes()
    # The sources' location is not an input: a copy elsewhere compiles to the same bytes.
    copy = tmp_path / "elsewhere" / "device"
    shutil.copytree(package_dir("device"), copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert build_release(keyed_home, "engine", "1.4.2", device_src=copy).data == first


@pytest.mark.parametrize("product", ["bike", "mirror", "engine"])
def test_a_bundle_holds_the_agent_its_own_profile_and_the_device_protocol(
        keyed_home: Path, product: str) -> None:
    made = build_release(keyed_home, product, "0.3.0")
    paths = [path for path, _ in made.files]
    protocol_files = [p for p in paths if p.startswith("protocol/")]
    assert protocol_files == sorted(f"protocol/{m}.mpy" for m in protocol.DEVICE_MODULES)
    device_files = {p for p in paths if p.startswith("device/")}
    assert {"device/agent.mpy", "device/main.mpy", "device/profiles/__init__.mpy",
            f"device/profiles/{product}.mpy"} <= device_files
    others = {f"device/profiles/{p}.mpy" for p in ("bike", "mirror", "engine") if p != product}
    assert not others & device_files
    # No first stage, no CPython-only half, no factory tool, no data, no sources.
    for absent in ("device/boot.mpy", "device/port_cpython.mpy",
                   "device/profiles/build_engine_data.mpy"):
        assert absent not in device_files
    assert all(p.endswith(".mpy") and data[:1] == b"M" for p, data in made.files)  # bytecode
    assert 25 <= len(paths) <= 40


def test_the_manifest_names_every_file_the_image_and_the_build(keyed_home: Path) -> None:
    made = build_release(keyed_home, "bike", "0.3.0", "0.2.0")
    opened = bundle.read(made.data)
    pub = KeyLayout.of_home(keyed_home).release_pub.read_bytes()
    assert bundle.verify(opened, pub) == []
    manifest = ota.parse_manifest(opened.text)
    assert (manifest["product"], manifest["version"], manifest["min_version"]) == (
        "bike", "0.3.0", "0.2.0")
    assert set(manifest["build"]) == {"micropython", "mpy_cross"}
    assert manifest["build"]["mpy_cross"].startswith("1.")
    for (path, size, sha), (name, data) in zip(manifest["files"], made.files, strict=True):
        assert (path, size, sha) == (name, len(data), hashlib.sha256(data).hexdigest())
    image = romfs.build([(p, len(d)) for p, d in made.files], [d for _, d in made.files])
    assert manifest["image"] == (len(image), hashlib.sha256(image).hexdigest())
    assert image == made.image
    # The device reports the version it runs: the bundle's, stamped into device/__init__.
    assert b"0.3.0" in dict(made.files)["device/__init__.mpy"]


def test_the_build_prints_json_and_defaults_min_version(keyed_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.flb"
    code, stdout, err = fw("build", "--home", str(keyed_home), "--product", "mirror",
                           "--version", "2.0.0", "--out", str(out), "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["min_version"] == "0.0.0"  # installs over any older version
    assert (result["product"], result["version"], result["bytes"]) == (
        "mirror", "2.0.0", len(out.read_bytes()))
    assert result["id"] == ota.bundle_id(hashlib.sha256(bundle.read(out.read_bytes()).text
                                                        .encode()).digest())


@pytest.mark.parametrize(("args", "message"), [
    (["--product", "toaster", "--version", "1.0.0"], "unknown product"),
    (["--product", "bike", "--version", "1.0"], "--version '1.0'"),
    (["--product", "bike", "--version", "01.0.0"], "MAJOR.MINOR.PATCH"),
    (["--product", "bike", "--version", "1.0.70000"], "65535"),
    (["--product", "bike", "--version", "1.0.0", "--min-version", "1.0.1"], "is above"),
    (["--product", "bike", "--version", "1.0.0", "--min-version", "x"], "--min-version"),
])
def test_bad_input_is_a_usage_error(keyed_home: Path, tmp_path: Path, args: list[str],
                                    message: str) -> None:
    code, _, err = fw("build", "--home", str(keyed_home), "--out", str(tmp_path / "b"), *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_without_a_release_key_nothing_is_built(tmp_path: Path) -> None:
    code, _, err = fw("build", "--home", str(tmp_path), "--product", "bike", "--version", "1.0.0",
                      "--out", str(tmp_path / "b"))
    assert code == 1 and "fleetloop fw keygen" in err
    assert not (tmp_path / "b").exists()


def test_stamp_version() -> None:
    assert stamp_version('"""doc"""\n\n__version__ = "0.1.0"\n', "2.3.4") == \
        '"""doc"""\n\n__version__ = "2.3.4"\n'
    assert stamp_version('"""doc"""\n', "2.3.4") == '"""doc"""\n\n__version__ = "2.3.4"\n'
