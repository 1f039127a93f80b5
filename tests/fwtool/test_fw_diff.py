"""`fleetloop fw diff` (fwtool.delta): a one-module change costs that module and a few hundred
bytes; the delta's patch rebuilds the new manifest exactly; what cannot make a good delta is
refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fwtool.cli import app
from fwtool.delta import make_delta, one_module_figures
from fwtool.errors import RefusedError
from fwtool.keys import KeyLayout
from fwtool.release import Release, build_release
from fwtool.sources import package_dir
from typer.testing import CliRunner

from protocol import bundle, ota

runner = CliRunner()


def pub(home: Path) -> bytes:
    return KeyLayout.of_home(home).release_pub.read_bytes()


@pytest.mark.parametrize("product", ["bike", "mirror", "engine"])
def test_a_one_module_change_costs_that_module_and_little_more(keyed_home: Path,
                                                               product: str) -> None:
    figures = one_module_figures(keyed_home, product)
    print(figures)  # the figures docs/factory.md quotes
    changed = figures["changed_file_bytes"]
    assert isinstance(changed, int) and isinstance(figures["delta_bytes"], int)
    assert isinstance(figures["full_bytes"], int)
    # The profile and device/__init__ (which carries the version the device reports).
    assert figures["files"] == ["device/__init__.mpy", f"device/profiles/{product}.mpy"]
    assert figures["delta_bytes"] <= changed + 1024
    assert figures["delta_bytes"] < figures["full_bytes"] / 10


@pytest.fixture(scope="module")
def two(keyed_home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Release, Release]:
    """bike 0.1.0, and 0.2.0 with one module changed and one removed."""
    copy = tmp_path_factory.mktemp("src") / "device"
    shutil.copytree(package_dir("device"), copy, ignore=shutil.ignore_patterns("__pycache__"))
    old = build_release(keyed_home, "bike", "0.1.0", device_src=copy)
    (copy / "hint.py").unlink()
    (copy / "codec.py").write_text((copy / "codec.py").read_text() + "\nNEW_NAME = 1\n")
    return old, build_release(keyed_home, "bike", "0.2.0", device_src=copy)


def test_the_patch_rebuilds_the_new_manifest_exactly(keyed_home: Path,
                                                     two: tuple[Release, Release]) -> None:
    old, new = two
    delta = make_delta(old.data, new.data, pub(keyed_home))
    opened = bundle.read(delta.data)
    assert ota.apply_patch(old.text, opened.text) == new.text
    assert delta.files == ("device/__init__.mpy", "device/codec.mpy")
    assert delta.dropped == ("device/hint.mpy",)
    # Each carried file sits at its index in NEW's manifest, with NEW's bytes.
    index = {path: i + 1 for i, (path, _) in enumerate(new.files)}
    assert sorted(opened.files) == [index[p] for p in delta.files]
    assert opened.files[index["device/codec.mpy"]] == dict(new.files)["device/codec.mpy"]
    assert bundle.verify(opened, pub(keyed_home), old.text) == []
    assert opened.id(old.text) == new.id  # the offer is the same as for the full bundle


def test_the_cli_writes_a_delta_that_verifies_over_its_base(keyed_home: Path, tmp_path: Path,
                                                            two: tuple[Release, Release]) -> None:
    old, new = two
    (tmp_path / "old.flb").write_bytes(old.data)
    (tmp_path / "new.flb").write_bytes(new.data)
    out = tmp_path / "d" / "delta.flb"
    result = runner.invoke(app, ["diff", str(tmp_path / "old.flb"), str(tmp_path / "new.flb"),
                                 "--out", str(out), "--home", str(keyed_home), "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["bytes"] == len(out.read_bytes()) and made["saved"] == len(new.data) - made["bytes"]
    assert (made["base"], made["version"], made["dropped"]) == ("0.1.0", "0.2.0", ["device/hint.mpy"])
    check = runner.invoke(app, ["verify", str(out), "--home", str(keyed_home),
                                "--base", str(tmp_path / "old.flb")])
    assert check.exit_code == 0, check.output
    text = runner.invoke(app, ["diff", str(tmp_path / "old.flb"), str(tmp_path / "new.flb"),
                               "--out", str(out), "--home", str(keyed_home)])
    assert text.exit_code == 0 and "saves" in text.stdout and "2 changed files" in text.stdout


def test_what_cannot_make_a_delta_is_refused(keyed_home: Path, two: tuple[Release, Release]) -> None:
    old, new = two
    key = pub(keyed_home)
    with pytest.raises(RefusedError, match=r"NEW \(0.1.0\) is not newer than OLD \(0.2.0\)"):
        make_delta(new.data, old.data, key)
    with pytest.raises(RefusedError, match="not newer"):
        make_delta(old.data, old.data, key)
    mirror = build_release(keyed_home, "mirror", "0.3.0")
    with pytest.raises(RefusedError, match="OLD is a bike bundle, NEW a mirror bundle"):
        make_delta(old.data, mirror.data, key)
    strict = build_release(keyed_home, "bike", "0.3.0", "0.2.0")
    with pytest.raises(RefusedError, match="NEW needs at least 0.2.0"):
        make_delta(old.data, strict.data, key)
    damaged = bytearray(new.data)
    damaged[-1] ^= 1
    with pytest.raises(RefusedError, match="NEW: bundle refused: .*sha256"):
        make_delta(old.data, bytes(damaged), key)
    delta = make_delta(old.data, new.data, key).data
    with pytest.raises(RefusedError, match="OLD: a delta over 0.1.0, not a full bundle"):
        make_delta(delta, strict.data, key)


def test_the_cli_refuses_with_exit_1(keyed_home: Path, tmp_path: Path,
                                     two: tuple[Release, Release]) -> None:
    old, new = two
    (tmp_path / "old.flb").write_bytes(old.data)
    (tmp_path / "new.flb").write_bytes(new.data)
    result = runner.invoke(app, ["diff", str(tmp_path / "new.flb"), str(tmp_path / "old.flb"),
                                 "--out", str(tmp_path / "x.flb"), "--home", str(keyed_home)])
    assert result.exit_code == 1 and "not newer" in result.stderr
    assert not (tmp_path / "x.flb").exists()
