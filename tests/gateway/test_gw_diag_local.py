"""What diag reads on the box, and the technician's two credentials, without a gateway: the
technician's certificate (issued from the home's device CA, renewed before it expires, never
without the CA key), certificate expiry as diag judges it, the clock against a real HTTP
server's Date, disk space, the status token file, and the bundle's redaction of secrets by
value and by shape."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from gwkit import FakeCloud

from gateway import diag_local, diag_problems, logfile, tech_credential
from gateway.settings import Settings
from gateway.support_bundle import REDACTED, Redactor
from gateway.tech_identity import CN, TechIdentity
from protocol.topics import valid_device_id


def test_the_technician_certificate_comes_from_the_device_ca_and_is_renewed(home: Path) -> None:
    ident = TechIdentity.under(home, "gw-1")
    assert ident.ensure() and ident.cert.is_file()
    assert stat.S_IMODE(ident.key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(ident.cert.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ident.ca_cert.read_bytes()))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CN
    assert not valid_device_id(CN)  # no device certificate can carry it
    first = ident.cert.read_bytes()
    assert ident.ensure() and ident.cert.read_bytes() == first  # kept while valid
    ident.key.write_bytes((home / "keys" / "broker.key.pem").read_bytes())  # not its key
    assert ident.ensure() and ident.cert.read_bytes() != first
    first = ident.cert.read_bytes()

    ident.issue(dt.datetime.now(dt.UTC) - dt.timedelta(days=350))  # 15 days left
    [listed] = [c for c in diag_local.certificates(home, "gw-1") if c["name"] == "technician"]
    assert 14 <= listed["days_left"] <= 15
    found = diag_problems.find({"certificates": [listed]}, 0)
    assert [p.code for p in found] == ["certificate_expiring"]
    assert "technician expires in 15 day(s)" in found[0].message
    assert ident.ensure() and ident.cert.read_bytes() != first  # renewed at the next start
    [listed] = [c for c in diag_local.certificates(home, "gw-1") if c["name"] == "technician"]
    assert listed["days_left"] > 300


def test_without_the_ca_key_no_technician_certificate_is_made(home: Path) -> None:
    (home / "keys" / "ca.key.pem").unlink()
    ident = TechIdentity.under(home, "gw-1")
    assert not ident.ensure() and not ident.cert.exists()
    names = {c["name"] for c in diag_local.certificates(home, "gw-1")}
    assert names == {"device CA", "broker", "gateway MQTT"}  # optional: not listed as missing


def test_a_missing_certificate_is_a_critical_problem(home: Path) -> None:
    shutil.rmtree(home / "keys" / "gateways")
    certs = diag_local.certificates(home, "gw-1")
    [gw] = [c for c in certs if c["name"] == "gateway MQTT"]
    assert gw["error"] == "missing"
    [p] = diag_problems.find({"certificates": certs}, 0)
    assert p.code == "certificate_unreadable" and p.severity is diag_problems.Severity.CRITICAL


def test_the_clock_is_compared_with_the_clouds_date(cloud: FakeCloud) -> None:
    got = diag_local.clock_offset(cloud.url + "/api/v1/ingest")
    assert got is not None and abs(got["offset_s"]) <= 2 and got["source"] == cloud.url
    assert diag_local.clock_offset("http://127.0.0.1:1", timeout_s=0.5) is None
    assert diag_local.clock_offset("not a url") is None


def test_disk_space_is_read_for_the_nearest_existing_directory(tmp_path: Path) -> None:
    got = diag_local.disk(tmp_path / "not" / "made" / "yet")
    assert got is not None and got["path"] == str(tmp_path)
    assert 0 < got["free_bytes"] <= got["total_bytes"] and got["full"] is False


def test_the_status_token_is_made_once_private_and_checked_exactly(tmp_path: Path) -> None:
    path = tech_credential.token_path(tmp_path / "gw")
    token = tech_credential.ensure(path)
    assert len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tech_credential.ensure(path) == token
    path.write_text("")  # left empty by an older crash: replaced, not refused
    assert tech_credential.ensure(path) != token and tech_credential.read(path)
    assert tech_credential.allowed(f"Bearer {token}", token)
    for bad in (None, "", token, f"Bearer {token}x", f"Basic {token}", "Bearer "):
        assert not tech_credential.allowed(bad, token), bad


def test_secrets_are_redacted_by_value_and_by_shape(home: Path) -> None:
    s = Settings.build(env={}, home=home, gateway_id="gw-1")
    tech_credential.ensure(tech_credential.token_path(s.gateway_dir))
    redact = Redactor.for_home(s)
    key_pem = (home / "keys" / "gateways" / "gw-1" / "mqtt.key.pem").read_text()
    a_line = key_pem.splitlines()[1]
    record_key = (home / "keys" / "devices" / "bike-1" / "record.key").read_bytes().hex()
    text = (f"token file says {s.token_path.read_text().strip()}; pasted {a_line}; "
            f"record key {record_key}; {key_pem}; Authorization: Bearer abc.def; "
            "api_key=12345 password: hunter2 token='xyz' cloud https://ops:s3cr3t@cloud.example/")
    out = redact.text(text)
    for secret in (s.token_path.read_text().strip(), a_line, record_key, "abc.def", "12345",
                   "hunter2", "xyz", "PRIVATE KEY", "s3cr3t"):
        assert secret not in out, secret
    assert out.count(REDACTED) >= 9 and "https://ops:[REDACTED]@cloud.example/" in out
    assert redact.text("nothing secret here: bike-1 sent 20 records") == \
        "nothing secret here: bike-1 sent 20 records"


def test_the_gateway_log_file_is_private_bounded_and_read_from_its_end(tmp_path: Path) -> None:
    path = tmp_path / "gw" / logfile.FILE_NAME
    log = logging.getLogger("fleetloop.gateway.test")
    with logfile.attached(path, max_bytes=2000):
        for i in range(200):
            log.error("line %d %s", i, "x" * 50)
    log.error("after the block: not in the file")
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["gateway.log", *(f"gateway.log.{i}" for i in range(1, 5))]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert sum(f.stat().st_size for f in files) <= 5 * 2100
    last = logfile.tail(path, 3)
    assert [ln.split("line ")[1].split()[0] for ln in last] == ["197", "198", "199"]
    assert logfile.tail(tmp_path / "none", 3) == []
