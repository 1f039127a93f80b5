"""Slot a of a device image (fwtool.slots), `fleetloop fw flash` to a board and into a host
image, provisioning from a given bundle, and an engine reading its own trajectory from the
image's assets/ on the real MicroPython interpreter."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from fwtool import flash as flashing
from fwtool.batch import Row, provision_many
from fwtool.cli import app
from fwtool.delta import make_delta
from fwtool.errors import RefusedError, UsageError
from fwtool.keys import KeyLayout, generate
from fwtool.provision import provision
from fwtool.release import Release, build_release
from fwtool.slots import install_slot
from fwtool.trajectory import unit_of
from typer.testing import CliRunner

from fleetloop.device_runner import micropython_binary
from protocol import romfs

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("home")
    generate(h, ["gw-1"], ["bike-1", "engine-7"])
    return h


@pytest.fixture(scope="module")
def bikes(home: Path) -> tuple[Release, Release]:
    return build_release(home, "bike", "0.1.0"), build_release(home, "bike", "0.2.0")


def pub(home: Path) -> bytes:
    return KeyLayout.of_home(home).release_pub.read_bytes()


def test_install_slot_writes_slot_a_and_resets_the_others(home: Path, tmp_path: Path,
                                                          bikes: tuple[Release, Release]) -> None:
    image = tmp_path / "img"
    (image / "fw").mkdir(parents=True)
    for name in ("b.img", "b.man"):
        (image / "fw" / name).write_bytes(b"an earlier update")
    opened = install_slot(image, bikes[1].data, pub(home), product="bike")
    assert opened.version == "0.2.0"
    assert sorted(p.name for p in (image / "fw").iterdir()) == ["a.img", "a.man", "boot.json",
                                                                 "floor"]
    assert (image / "fw" / "a.img").read_bytes() == bikes[1].image
    assert (image / "fw" / "a.man").read_bytes() == opened.signature + bikes[1].text.encode()
    assert (image / "fw" / "boot.json").read_bytes() == b'{"active":"a","a":"0.2.0"}'
    assert (image / "fw" / "floor").read_bytes() == b"0.2.0"
    files = [(p, len(d)) for p, d in bikes[1].files]
    assert romfs.build(files, [d for _, d in bikes[1].files]) == bikes[1].image


@pytest.mark.parametrize(("make", "reason"), [
    (lambda b, d: d[:-1], "bundle refused: bundle ends inside"),
    (lambda b, d: d.replace(b"version 0.2.0", b"version 0.2.1", 1), "bad signature"),
    (lambda b, d: b, "not a full bundle"),
])
def test_install_slot_refuses_before_writing(home: Path, tmp_path: Path,
                                             bikes: tuple[Release, Release], make,  # type: ignore[no-untyped-def]
                                             reason: str) -> None:
    delta = make_delta(bikes[0].data, bikes[1].data, pub(home)).data
    with pytest.raises(RefusedError, match=reason):
        install_slot(tmp_path / "img", make(delta, bikes[1].data), pub(home))
    assert not (tmp_path / "img").exists()
    with pytest.raises(RefusedError, match="the bundle is for bike, not for mirror"):
        install_slot(tmp_path / "img", bikes[1].data, pub(home), product="mirror")


def test_provision_installs_a_given_bundle_of_its_product_only(
        home: Path, tmp_path: Path, bikes: tuple[Release, Release]) -> None:
    (tmp_path / "b.flb").write_bytes(bikes[1].data)
    out = tmp_path / "bike-1"
    result = runner.invoke(app, ["provision", "--home", str(home), "--id", "bike-1", "--profile",
                                 "bike", "--out", str(out), "--bundle", str(tmp_path / "b.flb")])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "fw" / "boot.json").read_text()) == {"active": "a", "a": "0.2.0"}
    assert json.loads((out / "identity.json").read_text())["fw"] == "0.2.0"
    # A bike bundle for an engine: refused, nothing written.
    result = runner.invoke(app, ["provision", "--home", str(home), "--id", "engine-7",
                                 "--profile", "engine", "--out", str(tmp_path / "engine-7"),
                                 "--bundle", str(tmp_path / "b.flb")])
    assert result.exit_code == 1 and "the bundle is for bike, not for engine" in result.stderr
    assert not (tmp_path / "engine-7").exists()


def test_a_batch_takes_one_bundle_per_product(home: Path, tmp_path: Path,
                                              bikes: tuple[Release, Release]) -> None:
    rows = [Row("bike-1", "bike"), Row("engine-7", "engine")]
    with pytest.raises(UsageError, match="no bundle for engine"):
        provision_many(home, rows, "localhost", 8883, out_root=tmp_path, bundles={"bike": bikes[1].data})
    with pytest.raises(UsageError, match="the engine bundle: .*is for bike"):
        provision_many(home, rows, "localhost", 8883, out_root=tmp_path,
                       bundles={"bike": bikes[1].data, "engine": bikes[0].data})
    engine = build_release(home, "engine", "0.4.0")
    result = provision_many(home, rows, "localhost", 8883, out_root=tmp_path,
                            bundles={"bike": bikes[1].data, "engine": engine.data})
    assert result.ok, result.failures
    for device, version in (("bike-1", "0.2.0"), ("engine-7", "0.4.0")):
        assert json.loads((tmp_path / device / "identity.json").read_text())["fw"] == version
        assert (tmp_path / device / "fw" / "floor").read_text() == version


def test_flash_to_a_host_image_replaces_slot_a_lib_and_the_version(
        home: Path, tmp_path: Path, bikes: tuple[Release, Release]) -> None:
    out = provision(home, "bike-1", "bike", "localhost", 8883, tmp_path / "bike-1",
                    bundle=bikes[0].data)
    (out / "data" / "seq").write_text("41")
    (tmp_path / "b.flb").write_bytes(bikes[1].data)
    result = runner.invoke(app, ["flash", str(tmp_path / "b.flb"), "--to", str(out),
                                 "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"image": str(out), "product": "bike",
                                         "version": "0.2.0", "slot": "a"}
    assert (out / "fw" / "a.img").read_bytes() == bikes[1].image
    assert (out / "lib" / "device" / "__init__.mpy").read_bytes() == \
        dict(bikes[1].files)["device/__init__.mpy"]
    assert json.loads((out / "identity.json").read_text())["fw"] == "0.2.0"
    assert (out / "data" / "seq").read_text() == "41"
    # Not into another product's image, and not into a directory that is no image.
    mirror = build_release(home, "mirror", "0.9.0")
    (tmp_path / "m.flb").write_bytes(mirror.data)
    result = runner.invoke(app, ["flash", str(tmp_path / "m.flb"), "--to", str(out),
                                 "--home", str(home)])
    assert result.exit_code == 1 and "the bundle is for mirror, not for bike" in result.stderr
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["flash", str(tmp_path / "b.flb"), "--to", str(tmp_path / "empty"),
                                 "--home", str(home)])
    assert result.exit_code == 2 and "not a device image" in result.stderr


def test_flash_to_a_board_runs_mpremote(home: Path, tmp_path: Path, bikes: tuple[Release, Release],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # No board can be attached here: the test stops at the mpremote command line.
    out = provision(home, "engine-7", "engine", "localhost", 8883, tmp_path / "engine-7")
    (out / "data" / "seq").write_text("1")
    calls: list[list[str]] = []

    def fake_run(argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0)

    monkeypatch.setattr(flashing, "_run", fake_run)
    result = runner.invoke(app, ["flash", str(out), "--port", "/dev/ttyUSB0", "--romfs"])
    assert result.exit_code == 0, result.output
    (argv,) = calls
    root = str(out.resolve())
    assert argv[1:] == [
        "-m", "mpremote", "connect", "/dev/ttyUSB0", "fs", "cp", "-r",
        *(f"{root}/{name}" for name in ("boot.mpy", "first_stage.mpy", "identity.json", "certs",
                                        "keys", "fw", "lib", "assets")),
        ":", "+", "romfs", "deploy", f"{root}/fw/a.img"]  # never data/
    monkeypatch.setattr(flashing, "_run", lambda argv: subprocess.CompletedProcess(argv, 1))
    result = runner.invoke(app, ["flash", str(out), "--port", "/dev/ttyUSB0"])
    assert result.exit_code == 1 and "mpremote failed (exit 1)" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "--help-me"], "not a serial port"),
    (["--port", "/dev/ttyUSB0", "--to", "x"], "give --port"),
    ([], "give --port"),
])
def test_flash_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["flash", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.stderr, result.output
    not_an_image = runner.invoke(app, ["flash", str(tmp_path), "--port", "/dev/ttyUSB0"])
    assert not_an_image.exit_code == 2 and "not a provisioned firmware image" in not_an_image.stderr


def test_an_engine_reads_its_own_trajectory_from_the_image_on_micropython(
        home: Path, tmp_path: Path) -> None:
    out = provision(home, "engine-7", "engine", "localhost", 8883, tmp_path / "engine-7")
    probe = ("from device.profiles import engine\n"
             "p = engine.Profile('engine-7')\n"
             "print(engine.data_path(), p.count, p.sample()['engine_unit'])\n")
    run = subprocess.run([micropython_binary(), "-X", "heapsize=64K", "-c", probe], cwd=out,
                         env={"MICROPYPATH": "lib"}, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    path, rows, unit = run.stdout.split()
    data = (out / "assets" / "cmapss_fd001.bin").read_bytes()
    assert path == "assets/cmapss_fd001.bin" and 12 + 8 * 14 + int(rows) * 32 == len(data)
    assert int(unit) == unit_of("engine-7")
