"""`fleetloop fw provision --cloud` against a real cloud: the image is built and the device
enrolled with its certificate's fingerprint, customer and hardware revision."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from fwtool.cli import app
from fwtool.keys import KeyLayout
from typer.testing import CliRunner

from fleetloop.stack import Stack

runner = CliRunner()


def test_provision_enrols_the_device(tmp_path: Path) -> None:
    st = Stack(home=tmp_path / "home", admin_token="test-admin-token-" + tmp_path.name)
    try:
        st.keygen(["bike-7"])
        st.start_cloud()
        with st.admin() as admin:
            admin.post("/api/v1/customers", json={"id": "acme", "name": "Acme"})
        token = tmp_path / "factory-token"
        token.write_text(st.admin_token)
        args = ["provision", "--home", str(st.home), "--id", "bike-7", "--profile", "bike",
                "--cloud", st.cloud_url, "--token-file", str(token)]
        out = runner.invoke(app, [*args, "--customer", "acme", "--hw-rev", "r2"])
        assert out.exit_code == 0, out.output
        assert "enrolled bike-7" in out.output
        with st.admin() as admin:
            device = admin.get("/api/v1/devices/bike-7").json()
        cert = x509.load_der_x509_certificate(
            KeyLayout.of_home(st.home).device_cert_der("bike-7").read_bytes())
        assert (device["customer"], device["hw_rev"], device["record_key_registered"]) == (
            "acme", "r2", True)
        assert device["cert_fingerprint"] == cert.fingerprint(hashes.SHA256()).hex()
        out = runner.invoke(app, [*args, "--customer", "nobody"])
        assert out.exit_code == 1 and "422" in out.output
        out = runner.invoke(app, [*args[:7], "--customer", "acme"])
        assert out.exit_code == 2 and "go with --cloud" in out.output
    finally:
        st.stop()
