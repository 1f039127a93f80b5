"""`fleetloop fw verify`: a good bundle passes; every way a bundle can be bad is refused with one
clear reason and exit 1. Hostile manifests are written by hand and signed with the test's
release key, so they get past the writer's own checks and reach the reader's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fwtool.cli import app
from fwtool.delta import make_delta
from fwtool.keys import KeyLayout, load_ed25519_private
from fwtool.release import Release, build_release
from typer.testing import CliRunner

from protocol import bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def releases(keyed_home: Path) -> tuple[Release, Release]:
    return (build_release(keyed_home, "bike", "0.1.0"), build_release(keyed_home, "bike", "0.2.0"))


def verify(home: Path, tmp_path: Path, data: bytes, *args: str) -> tuple[int, dict]:
    path = tmp_path / "candidate.flb"
    path.write_bytes(data)
    result = runner.invoke(app, ["verify", str(path), "--home", str(home), "--json", *args])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def craft(home: Path, files: list[tuple[str, bytes]], *, sizes: dict[str, int] | None = None,
          head: str = "") -> bytes:
    """A full bundle whose manifest text is written line by line (no check_manifest), signed
    with the release key: what an attacker holding that key, or a buggy writer, could make."""
    sizes = sizes or {}
    lines = ["fleetloop-manifest 1", "product bike", "version 9.0.0", "min_version 0.0.0",
             "build mpy_cross=1", f"image 4 {'0' * 64}"]
    lines += [f"file {p} {sizes.get(p, len(d))} {hashlib.sha256(d).hexdigest()}" for p, d in files]
    text = head + "\n".join(lines) + "\n"
    key = load_ed25519_private(KeyLayout.of_home(home).release_key_pem)
    return bundle.write(bundle.sign_text(text, key), text,
                        {i + 1: d for i, (_, d) in enumerate(files)})


def test_a_good_bundle_passes(keyed_home: Path, tmp_path: Path,
                              releases: tuple[Release, Release]) -> None:
    code, report = verify(keyed_home, tmp_path, releases[0].data)
    assert code == 0 and report["ok"] and report["problems"] == []
    assert (report["kind"], report["product"], report["version"], report["files"]) == (
        "full", "bike", "0.1.0", len(releases[0].files))
    path = tmp_path / "good.flb"
    path.write_bytes(releases[0].data)
    plain = runner.invoke(app, ["verify", str(path), "--home", str(keyed_home)])
    assert plain.exit_code == 0 and "good:" in plain.stdout and plain.stderr == ""


def _tamper_file(data: bytes) -> bytes:
    out = bytearray(data)
    out[-10] ^= 0x01  # inside the last file
    return bytes(out)


def _tamper_manifest(data: bytes) -> bytes:
    return data.replace(b"min_version 0.0.0", b"min_version 0.0.1", 1)


@pytest.mark.parametrize(("tamper", "reason"), [
    (_tamper_file, "protocol/topics.mpy: sha256 does not match"),
    (_tamper_manifest, "bad signature"),
    (lambda d: d[:-1], "ends inside protocol/topics.mpy"),
    (lambda d: d + b"\0\0\0", "3 stray bytes after the last file"),
    (lambda d: b"PK\3\4" + d[4:], "not a fleetloop bundle"),
    (lambda d: b"", "not a fleetloop bundle"),
    (lambda d: d[:8] + b"[]" + d[10:], "bundle header"),
])
def test_a_damaged_bundle_is_refused_with_its_reason(keyed_home: Path, tmp_path: Path,
                                                     releases: tuple[Release, Release],
                                                     tamper, reason: str) -> None:  # type: ignore[no-untyped-def]
    code, report = verify(keyed_home, tmp_path, tamper(releases[0].data))
    assert code == 1 and not report["ok"]
    assert len(report["problems"]) == 1 and reason in report["problems"][0], report


def test_another_release_key_is_refused(keyed_home: Path, tmp_path: Path,
                                        releases: tuple[Release, Release]) -> None:
    other = tmp_path / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    path = tmp_path / "b.flb"
    path.write_bytes(releases[0].data)
    result = runner.invoke(app, ["verify", str(path), "--release-pub", str(other)])
    assert result.exit_code == 1
    assert "refused: bad signature: not signed by this release key" in result.stderr


@pytest.mark.parametrize(("files", "sizes", "reason"), [
    ([("device/../../etc/cron.mpy", b"x")], None, "unsafe path device/../../etc/cron.mpy"),
    ([("/etc/passwd", b"x")], None, "unsafe path /etc/passwd: absolute"),
    ([("device/a.mpy", b"x"), ("device/a.mpy", b"y")], None, "each once: device/a.mpy"),
    ([("device/./a.mpy", b"x")], None, "unsafe path"),
    ([("device/a b.mpy", b"x")], None, "bad manifest line"),
    ([("device/big.mpy", b"x")], {"device/big.mpy": 300 * 1024}, "file size must be"),
])
def test_a_hostile_manifest_signed_with_the_right_key_is_still_refused(
        keyed_home: Path, tmp_path: Path, files: list[tuple[str, bytes]],
        sizes: dict[str, int] | None, reason: str) -> None:
    code, report = verify(keyed_home, tmp_path, craft(keyed_home, files, sizes=sizes))
    assert code == 1 and len(report["problems"]) == 1 and reason in report["problems"][0], report


def test_a_file_larger_than_any_bundle_is_refused_unread(keyed_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "huge.flb"
    with open(path, "wb") as f:
        f.truncate(bundle.MAX_BUNDLE_BYTES + 1)  # sparse: nothing to write
    result = runner.invoke(app, ["verify", str(path), "--home", str(keyed_home), "--json"])
    assert result.exit_code == 1
    assert "bundle too large" in json.loads(result.stdout)["problems"][0]


def test_a_delta_needs_its_base_for_the_signature(keyed_home: Path, tmp_path: Path,
                                                  releases: tuple[Release, Release]) -> None:
    old, new = releases
    pub = KeyLayout.of_home(keyed_home).release_pub.read_bytes()
    delta = make_delta(old.data, new.data, pub).data
    code, report = verify(keyed_home, tmp_path, delta)
    assert code == 1 and report["kind"] == "delta" and report["base"] == "0.1.0"
    assert report["problems"] == [
        "a delta over 0.1.0: its signature covers the whole manifest, which only its base can "
        "rebuild; give --base with the full bundle of 0.1.0"]
    (tmp_path / "base.flb").write_bytes(old.data)
    code, report = verify(keyed_home, tmp_path, delta, "--base", str(tmp_path / "base.flb"))
    assert code == 0 and report["id"] == new.id
    # A base that is not the one: another version, or the delta itself.
    (tmp_path / "wrong.flb").write_bytes(new.data)
    code, report = verify(keyed_home, tmp_path, delta, "--base", str(tmp_path / "wrong.flb"))
    assert code == 1 and "--base is bike 0.2.0" in report["problems"][0]
    # A delta's own files are checked even without the base.
    code, report = verify(keyed_home, tmp_path, _tamper_file(delta))
    assert code == 1 and "sha256 does not match" in report["problems"][1]


@pytest.mark.parametrize("args", [
    ["--home", "H", "--release-pub", "P"],  # both
    ["--release-pub", "missing.pub"],  # no such file
    ["--home", "empty"],  # no keys/release.pub there
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str],
                             releases: tuple[Release, Release]) -> None:
    (tmp_path / "P").write_bytes(b"\1" * 32)
    (tmp_path / "H").mkdir()
    (tmp_path / "empty").mkdir()
    path = tmp_path / "b.flb"
    path.write_bytes(releases[0].data)
    args = [str(tmp_path / a) if not a.startswith("--") else a for a in args]
    result = runner.invoke(app, ["verify", str(path), *args])
    assert result.exit_code == 2, result.output
    assert runner.invoke(app, ["verify", str(tmp_path / "nope.flb")]).exit_code == 2

