"""On a real uvicorn outside dev mode with no bootstrap admin: the first admin token is made
offline on the database, then `fleetloop token` works through the running cloud, a browser
signs in to the dashboard with a cookie, and no token or session id reaches the server's log."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fleetloop.cli import app as cli_app
from fleetloop.procs import Process

pytestmark = pytest.mark.e2e


def test_tokens_and_sign_in_on_a_running_cloud(tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = tmp_path / "root.token"
    runner = CliRunner()
    r = runner.invoke(cli_app, ["token", "create", "--home", str(home), "--name", "root",
                                "--role", "admin", "--out", str(root)])
    assert r.exit_code == 0, r.output
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_")}
    cloud = Process("cloud", [sys.executable, "-m", "cloud.cli", "serve", "--home", str(home),
                              "--port", "0"], tmp_path / "logs" / "cloud.log", env=env).start()
    try:
        port = int(cloud.wait_for_log(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))
        url = f"http://127.0.0.1:{port}"
        online = ["--cloud", url, "--token-file", str(root)]
        r = runner.invoke(cli_app, ["token", "create", "--name", "tech", "--role", "technician",
                                    "--json", *online])
        assert r.exit_code == 0, r.output
        tech = json.loads(r.output)
        assert tech["created_by"] == "root" and tech["token"].startswith("flt_")
        r = runner.invoke(cli_app, ["token", "list", "--json", *online])
        assert [t["name"] for t in json.loads(r.output)] == ["root", "tech"]
        # a browser: the dashboard sends it to the form, the form gives it a session
        with httpx.Client(base_url=url, follow_redirects=False, timeout=5) as browser:
            assert browser.get("/").status_code == 303
            form = browser.get("/login")
            (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', form.text)
            r = browser.post("/login", data={"token": tech["token"], "csrf": csrf})
            assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
            assert browser.get("/").status_code == 200
            session_id = browser.cookies.get("fleetloop_session")
            r = runner.invoke(cli_app, ["token", "revoke", str(tech["id"]), *online])
            assert r.exit_code == 0 and "revoked" in r.output
            assert browser.get("/").status_code == 303  # the session died with its token
        r = runner.invoke(cli_app, ["token", "create", "--name", "x", "--role", "ops",
                                    "--cloud", url, "--token-file", str(tmp_path / "missing")])
        assert r.exit_code == 2 and "cannot read" in r.output
    finally:
        cloud.stop()
    log = cloud.log()
    assert "POST /login HTTP/1.1" in log
    for secret in (root.read_text().strip(), tech["token"], session_id or "-"):
        assert secret not in log
