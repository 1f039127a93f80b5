"""`fleetloop config` against a real cloud (uvicorn): set, show, rollback, drift."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetloop.config_cli import app
from fleetloop.stack import Stack

runner = CliRunner()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Stack]:
    st = Stack(home=tmp_path / "home", admin_token="test-admin-token-" + tmp_path.name)
    try:
        st.keygen(["bike-1"])
        st.start_cloud()
        with st.admin() as admin:
            for device in ("bike-1", "bike-2"):
                admin.post("/api/v1/devices", json={"id": device, "product": "bike"})
        yield st
    finally:
        st.stop()


def run(st: Stack, *args: str) -> tuple[int, str]:
    token = st.home / "ops-token"
    token.write_text(st.admin_token)
    out = runner.invoke(app, [*args, "--cloud", st.cloud_url, "--token-file", str(token)])
    return out.exit_code, out.output


def test_set_show_rollback_drift(cloud: Stack) -> None:
    code, out = run(cloud, "set", "--product", "bike", "--set", "interval_ms=1000", "--json")
    assert code == 0, out
    assert json.loads(out)["configs"] == {"bike-1": 1, "bike-2": 1}
    code, out = run(cloud, "set", "--product", "bike", "--set", "heartbeat_s=30", "--json")
    assert json.loads(out)["settings"] == {"interval_ms": 1000, "heartbeat_s": 30}  # merged
    code, out = run(cloud, "set", "--device", "bike-2", "--set", "interval_ms=200")
    assert code == 0 and "device bike-2: version 1" in out
    code, out = run(cloud, "rollback", "--product", "bike", "--version", "1", "--json")
    assert json.loads(out)["version"] == 3 and json.loads(out)["settings"] == {"interval_ms": 1000}
    code, out = run(cloud, "show", "--product", "bike")
    assert code == 0 and "version 3" in out and "(rollback to 1)" in out
    code, out = run(cloud, "drift", "--json")
    assert sorted(d["device"] for d in json.loads(out)) == ["bike-1", "bike-2"]
    assert {d["status"] for d in json.loads(out)} == {"offline"}  # never heard from


@pytest.mark.parametrize("args, says", [
    (["set", "--set", "interval_ms=5"], "exactly one of"),
    (["set", "--product", "bike", "--cohort", "x", "--set", "interval_ms=500"], "exactly one"),
    (["set", "--product", "bike", "--set", "interval_ms"], "name=integer"),
    (["set", "--product", "bike", "--set", "interval_ms=5"], "422"),
    (["show", "--cohort", "nope"], "404"),
])
def test_bad_input_is_a_clear_error(cloud: Stack, args: list[str], says: str) -> None:
    code, out = run(cloud, *args)
    assert code != 0 and says in out and "Traceback" not in out
