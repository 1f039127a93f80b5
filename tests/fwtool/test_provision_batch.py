"""Batch provisioning (`fleetloop fw provision --csv`, fwtool.batch): CSV errors refused before
anything is written, host images with distinct keys signed by the device CA, firmware images
identical to single provisioning, and enrolment that goes on past a conflict."""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fwtool.batch import Row, provision_many, read_csv
from fwtool.cli import app
from fwtool.errors import UsageError
from fwtool.keys import KeyLayout
from fwtool.provision import provision
from typer.testing import CliRunner

from fleetloop.stack import Stack

runner = CliRunner()
HOST_FILES = {"identity.json", "certs/ca.der", "certs/ca.pem", "certs/cert.der", "certs/cert.pem",
              "certs/key.der", "certs/key.pem", "keys/config.pub", "keys/release.pub",
              "keys/record.key"}


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` (relative name -> bytes, mode), and every directory's mode."""
    found: dict[str, tuple[bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.stat().st_mode & 0o777
        rel = str(path.relative_to(root))
        found[rel] = (path.read_bytes() if path.is_file() else b"<dir>", mode)
    return found


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty file"),
    ("id,product\nbike-1,bike\n", "batch.csv:1: unknown column 'product'"),
    ("id,customer\nbike-1,acme\n", "batch.csv:1: the header has no 'profile' column"),
    ("id,profile\nbike-1,bike\nbike 2,bike\n", "batch.csv:3: invalid device id 'bike 2'"),
    ("id,profile\nbike-1,bike\nbike-1,mirror\n", "batch.csv:3: duplicate id 'bike-1' (first on line 2)"),
    ("id,profile\nbike-1,bike\n\ntoaster-1,toaster\n", "batch.csv:4: unknown profile 'toaster'"),
    ("id,profile,customer\nbike-1,bike\n", "batch.csv:2: expected 3 fields (id,profile,customer), got 2"),
    ("id,profile\n", "no devices after the header"),
])
def test_a_bad_csv_is_refused_by_line_and_nothing_is_written(
        tmp_path: Path, text: str, message: str) -> None:
    csv_file = tmp_path / "batch.csv"
    csv_file.write_text(text)
    home = tmp_path / "home"
    out = runner.invoke(app, ["provision", "--home", str(home), "--csv", str(csv_file)])
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert "Traceback" not in out.output
    assert not home.exists()


def test_csv_columns_in_any_order_with_optional_fields(tmp_path: Path) -> None:
    csv_file = tmp_path / "batch.csv"
    csv_file.write_text("profile,hw_rev,id,customer\r\nengine,r2,eng-1,acme\r\nbike,,bike-1,\r\n")
    assert read_csv(csv_file) == [Row("eng-1", "engine", "acme", "r2"), Row("bike-1", "bike")]


@pytest.mark.parametrize("args", [
    ["--csv", "batch.csv", "--id", "bike-1"],
    ["--csv", "batch.csv", "--customer", "acme", "--cloud", "http://127.0.0.1:9"],
    ["--id", "bike-1"],
    ["--id", "bike-1", "--profile", "bike", "--no-firmware"],
])
def test_csv_and_one_device_options_do_not_mix(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "batch.csv").write_text("id,profile\nbike-1,bike\n")
    home = tmp_path / "home"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        out = runner.invoke(app, ["provision", "--home", str(home), *args])
    finally:
        os.chdir(cwd)
    assert out.exit_code == 2, out.output
    assert "error:" in out.output
    assert not home.exists()


def test_a_batch_of_host_images_has_distinct_keys_signed_by_the_device_ca(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rows = [Row(f"dev-{i}", ("bike", "mirror", "engine")[i % 3]) for i in range(20)]
    seen: list[tuple[int, int]] = []
    result = provision_many(home, rows, "localhost", 8883, firmware=False,
                            progress=lambda done, total: seen.append((done, total)))
    assert result.ok and result.provisioned == [r.device_id for r in rows]
    assert seen[-1] == (40, 40) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert set(result.seconds) == {"keys", "images"}

    ca = x509.load_pem_x509_certificate(KeyLayout.of_home(home).ca_cert_pem.read_bytes())
    record_keys, tls_keys = set(), set()
    for row in rows:
        image = home / "devices" / row.device_id
        files = {str(p.relative_to(image)) for p in image.rglob("*") if p.is_file()}
        assert files == HOST_FILES, row
        assert (image / "data").is_dir()
        ident = json.loads((image / "identity.json").read_text())
        assert (ident["id"], ident["profile"], ident["broker_port"]) == (row.device_id, row.profile, 8883)
        cert = x509.load_der_x509_certificate((image / "certs/cert.der").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == row.device_id
        key = serialization.load_der_private_key((image / "certs/key.der").read_bytes(), None)
        assert key.public_key() == cert.public_key()
        assert (image / "keys/record.key").stat().st_mode & 0o777 == 0o600
        record_keys.add((image / "keys/record.key").read_bytes())
        tls_keys.add((image / "certs/key.der").read_bytes())
    assert len(record_keys) == len(tls_keys) == len(rows)

    # Again: the same keys, data/ untouched, nothing failed.
    (home / "devices/dev-0/data/seq").write_text("41")
    before = (home / "devices/dev-0/keys/record.key").read_bytes()
    assert provision_many(home, rows, "localhost", 8883, firmware=False).ok
    assert (home / "devices/dev-0/keys/record.key").read_bytes() == before
    assert (home / "devices/dev-0/data/seq").read_text() == "41"


def test_a_firmware_batch_equals_single_provisioning_byte_for_byte(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rows = [Row("bike-3", "bike"), Row("mirror-3", "mirror"), Row("engine-3", "engine")]
    result = provision_many(home, rows, "gw.local", 8884, out_root=tmp_path / "batch")
    assert result.ok, result.failures
    for row in rows:
        single = provision(home, row.device_id, row.profile, "gw.local", 8884,
                           tmp_path / "single" / row.device_id)
        made = tree(tmp_path / "batch" / row.device_id)
        assert made == tree(single), row
        assert {"fw/a.img", "fw/a.man", "fw/boot.json", "fw/floor", "boot.mpy",
                "lib/device/main.mpy", f"lib/device/profiles/{row.profile}.mpy"} <= set(made)
    engine = tree(tmp_path / "batch" / "engine-3")
    assert "assets/cmapss_fd001.bin" in engine
    assert "assets/cmapss_fd001.bin" not in tree(tmp_path / "batch" / "bike-3")
    assert "lib/device/profiles/engine.mpy" not in tree(tmp_path / "batch" / "bike-3")


def test_an_image_dir_holding_another_device_stops_the_batch_before_any_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    other = home / "devices" / "bike-2"
    other.mkdir(parents=True)
    (other / "identity.json").write_text('{"id": "bike-9"}')
    with pytest.raises(UsageError, match="holds the image of 'bike-9'"):
        provision_many(home, [Row("bike-1", "bike"), Row("bike-2", "bike")], "localhost", 8883)
    assert not (home / "keys").exists() and not (home / "devices" / "bike-1").exists()


def test_batch_enrolment_goes_on_past_a_conflict_and_reports_it(tmp_path: Path) -> None:
    st = Stack(home=tmp_path / "home", admin_token="test-admin-token-" + tmp_path.name)
    try:
        st.keygen([])
        st.start_cloud()
        with st.admin() as admin:
            admin.post("/api/v1/customers", json={"id": "acme", "name": "Acme"}).raise_for_status()
            # bike-2 was enrolled elsewhere with another record key: the cloud keeps that one
            admin.post("/api/v1/devices", json={
                "id": "bike-2", "product": "bike",
                "record_key": base64.b64encode(secrets.token_bytes(32)).decode()}).raise_for_status()
        ids = [f"bike-{i}" for i in range(1, 7)]
        csv_file = tmp_path / "batch.csv"
        csv_file.write_text("id,profile,customer,hw_rev\n"
                            + "".join(f"{dev},bike,acme,r{i}\n" for i, dev in enumerate(ids)))
        token = tmp_path / "factory-token"
        token.write_text(st.admin_token)
        args = ["provision", "--home", str(st.home), "--csv", str(csv_file), "--no-firmware",
                "--cloud", st.cloud_url, "--token-file", str(token)]

        for _ in range(2):  # a re-run is idempotent: the same devices enrolled, the same failure
            out = runner.invoke(app, [*args, "--json"])
            assert out.exit_code == 1, out.output
            report = json.loads(out.stdout)
            assert report["provisioned"] == ids and report["enrolled"] == 5
            assert [f["id"] for f in report["failures"]] == ["bike-2"]
            assert "different record key" in report["failures"][0]["reason"]
            assert "failed: bike-2: enrol: " in out.stderr

        with st.admin() as admin:
            devices = {d: admin.get(f"/api/v1/devices/{d}").json() for d in ids}
        assert all(devices[d]["record_key_registered"] for d in ids)
        assert [(devices[d]["customer"], devices[d]["hw_rev"]) for d in ids if d != "bike-2"] == [
            ("acme", f"r{i}") for i, d in enumerate(ids) if d != "bike-2"]

        out = runner.invoke(app, args)  # the one-line summary without --json
        assert out.exit_code == 1
        assert "provisioned 6 of 6 devices (host images), enrolled 5, 1 failed" in out.stdout
    finally:
        st.stop()
