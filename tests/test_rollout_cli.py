"""`fleetloop rollout` against a real cloud (uvicorn): upload (good, again, refused), create,
list, status and --watch, pause, resume, abort, and the exit codes of bad input."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from typer.testing import CliRunner

from fleetloop.rollout_cli import app
from fleetloop.stack import Stack

sys.path.insert(0, str(Path(__file__).parent / "cloud"))
from updatekit import full  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("rollout-cli") / "home"
    st = Stack(home=home, admin_token="test-admin-token-rollout-cli")
    try:
        st.keygen([])  # the release key: the cloud reads keys/release.pub
        st.start_cloud()
        with st.admin() as admin:
            for device in ("bike-1", "bike-2", "bike-3"):
                admin.post("/api/v1/devices", json={"id": device, "product": "bike"})
        (home / "ops-token").write_text(st.admin_token)
        key = load_pem_private_key((home / "keys" / "release.key.pem").read_bytes(), None)
        (home / "bike-0.2.0.flb").write_bytes(full(key))  # type: ignore[arg-type]
        yield st
    finally:
        st.stop()


def run(st: Stack, *args: str) -> tuple[int, str]:
    out = runner.invoke(app, [*args, "--cloud", st.cloud_url,
                              "--token-file", str(st.home / "ops-token")])
    return out.exit_code, out.output


def test_upload_create_watch_and_steer(cloud: Stack) -> None:
    bundle = cloud.home / "bike-0.2.0.flb"
    code, out = run(cloud, "upload", str(bundle))
    assert code == 0 and "stored" in out and "bike-0.2.0" in out, out
    code, out = run(cloud, "upload", str(bundle), "--json")
    assert code == 0 and json.loads(out)["key"] == "bike-0.2.0"
    bad = cloud.home / "bad.flb"
    bad.write_bytes(bundle.read_bytes()[:-1] + b"?")
    code, out = run(cloud, "upload", str(bad))
    assert code == 1 and "refused: protocol/ota.mpy: sha256 does not match" in out, out

    code, out = run(cloud, "create", "--bundle", "bike-0.2.0", "--device", "bike-1",
                    "--device", "bike-2", "--waves", "50,100", "--soak", "2h",
                    "--threshold", "20%", "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert (plan["id"], plan["soak_s"], plan["failure_threshold"]) == ("r-1", 7200, 0.2)
    assert [w["devices"] for w in plan["waves"]] == [1, 1]
    code, out = run(cloud, "status", "r-1")
    assert code == 0 and "pending" in out and "running" in out, out
    code, out = run(cloud, "list", "--json")
    assert [r["id"] for r in json.loads(out)] == ["r-1"]
    assert run(cloud, "pause", "r-1")[0] == 0
    code, out = run(cloud, "status", "r-1", "--watch")
    assert code == 3 and "paused" in out, out  # stopped without completing
    code, out = run(cloud, "pause", "r-1")
    assert code == 1 and "409" in out
    assert run(cloud, "resume", "r-1")[0] == 0
    code, out = run(cloud, "abort", "r-1", "--json")
    assert code == 0 and json.loads(out)["state"] == "aborted"

    # a rollout with no soak whose devices are off passes every wave at once: completed
    code, out = run(cloud, "create", "--bundle", "bike-0.2.0", "--device", "bike-3",
                    "--soak", "0")
    assert code == 0, out
    code, out = run(cloud, "status", "r-2", "--watch", "--interval", "0.2")
    assert code == 0 and "completed" in out, out


@pytest.mark.parametrize("args, code, says", [
    (["create", "--bundle", "bike-0.2.0"], 2, "--cohort or --device"),
    (["create", "--bundle", "bike-0.2.0", "--cohort", "c", "--soak", "1x"], 2, "duration"),
    (["create", "--bundle", "bike-0.2.0", "--cohort", "c", "--threshold", "150%"], 2,
     "between 0% and 100%"),
    (["create", "--bundle", "bike-0.2.0", "--cohort", "nobody"], 1, "cohort nobody not found"),
    (["status", "r-99"], 1, "404"),
    (["upload", "/nonexistent/bundle.flb"], 2, "cannot read"),
])
def test_bad_input_is_a_clear_error(cloud: Stack, args: list[str], code: int,
                                    says: str) -> None:
    # the bundle is there whichever test of the module ran first (pytest-xdist spreads them
    # over workers, each with its own cloud): an upload of the same bytes again is a no-op
    uploaded, out = run(cloud, "upload", str(cloud.home / "bike-0.2.0.flb"))
    assert uploaded == 0, out
    got, out = run(cloud, *args)
    assert got == code and says in out and "Traceback" not in out, out
