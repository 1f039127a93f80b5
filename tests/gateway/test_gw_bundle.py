"""`diag --bundle`: a real gateway's support bundle holds its status, logs, config, versions
and table dumps, and no secret of the run: every file in it is searched for every private
key's PEM body (and its DER forms), the cloud token and the technician's credential, even
after a secret was written into the gateway's log by mistake."""

from __future__ import annotations

import base64
import json
import logging
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from gwkit import TOKEN, Device, FakeCloud, RunningGateway, gateway_settings, wait_for
from typer.testing import CliRunner

from gateway import tech_credential
from gateway.cli import app
from gateway.tech_identity import TechIdentity

GatewayStarter = Callable[..., RunningGateway]


def _secrets(home: Path, gateway_dir: Path) -> dict[str, str]:
    """Every secret of the run, by where it came from; PEM bodies line by line."""
    found = {"cloud token": TOKEN,
             "technician token": tech_credential.token_path(gateway_dir).read_text().strip()}
    keys = [p for p in (home / "keys").rglob("*") if p.is_file() and (
        p.name.endswith(".key") or "key" in p.name and p.suffix in (".pem", ".der"))]
    keys.append(TechIdentity.under(home, "gw-1").key)
    assert len(keys) >= 10, keys
    for path in keys:
        data = path.read_bytes()
        if data.startswith(b"-----BEGIN"):
            body = [ln for ln in data.decode().splitlines() if not ln.startswith("-----")]
            for i, line in enumerate(body):
                if len(line) >= 16:
                    found[f"{path.name} line {i}"] = line
        else:
            found[f"{path} base64"] = base64.b64encode(data).decode()
            found[f"{path} hex"] = data.hex()
    return found


def _files(bundle: Path) -> dict[str, str]:
    if bundle.suffix == ".zip":
        with zipfile.ZipFile(bundle) as zf:
            return {n: zf.read(n).decode() for n in zf.namelist()}
    with tarfile.open(bundle, "r:gz") as tf:
        return {m.name: tf.extractfile(m).read().decode()  # type: ignore[union-attr]
                for m in tf.getmembers() if m.isfile()}


def test_the_support_bundle_has_what_support_needs_and_no_secret(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter,
        devices: Callable[..., Device], tmp_path: Path) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    for seq in range(1, 6):
        bike.send(seq)
    wait_for(lambda: len(cloud.records) == 5, 10, "5 records in the cloud")
    secrets = _secrets(home, gw.settings.gateway_dir)
    # A mistake somewhere logs secrets: the bundle must still not carry them.
    key_line = next(v for k, v in secrets.items() if k.startswith("batch.key.pem"))
    logging.getLogger("fleetloop.gateway").error(
        "debug dump: Authorization: Bearer %s token=%s key %s", secrets["technician token"],
        TOKEN, key_line)

    for name in ("support.tar.gz", "support.zip"):
        bundle = tmp_path / name
        result = CliRunner().invoke(app, ["diag", "--home", str(home), "--bundle", str(bundle)],
                                    env={"COLUMNS": "200"})
        assert result.exit_code in (0, 1), result.output
        files = _files(bundle)
        short = {n.split("/", 1)[1]: text for n, text in files.items()}
        assert {"status.json", "versions.json", "config/settings.json", "config/mosquitto.conf",
                "config/acl", "logs/gateway.log", "logs/mosquitto.log", "tables/spool.jsonl",
                "tables/device_vitals.jsonl", "tables/streams.jsonl", "README.txt"} <= set(short)
        status = json.loads(short["status.json"])
        assert status["gateway"] == "gw-1" and status["ingest"]["records"] == 5
        assert "problems" in status
        assert json.loads(short["versions.json"])["fleetloop"]
        assert "debug dump: Authorization: Bearer [REDACTED] token=[REDACTED]" in \
            short["logs/gateway.log"]
        streams = [json.loads(ln) for ln in short["tables/streams.jsonl"].splitlines()]
        assert streams[0]["table"] == "streams" and streams[1]["device"] == "bike-1"
        for path, text in files.items():
            for what, value in secrets.items():
                assert value not in text, f"{what} found in {path}"
