"""`fleetloop policy` against a real cloud (uvicorn) whose database holds a few weeks of
simulated rides: create from flags and from a file, list, show, stop, and the exit codes of
bad usage (2) and of what the cloud refuses (1)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from cloud.db import open_database
from cloud.loop.activity import WEEK_MS
from fleetloop.fleet.play import Player
from fleetloop.policy_cli import app
from fleetloop.stack import Stack

runner = CliRunner()
END = 1_780_000_000_000
START = END - 12 * WEEK_MS


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("policy-cli") / "home"
    st = Stack(home=home, admin_token="test-admin-token-policy-cli")
    try:
        st.keygen([])  # the config-signing key
        st.start_cloud()
        db = open_database(home / "cloud" / "cloud.db")
        with db.connection() as store:
            Player(store, 2, [("bike", 8)], START, END).play_until(START + 5 * WEEK_MS)
        db.close()
        (home / "ops-token").write_text(st.admin_token)
        yield st
    finally:
        st.stop()


def run(st: Stack, *args: str) -> tuple[int, str]:
    out = runner.invoke(app, [*args, "--cloud", st.cloud_url,
                              "--token-file", str(st.home / "ops-token")])
    return out.exit_code, out.output


def test_create_list_show_stop(cloud: Stack) -> None:
    code, out = run(cloud, "create", "--name", "coach-all", "--product", "bike",
                    "--set", "coach_mode=1", "--outcome", "rides_per_week", "--share", "50%",
                    "--seed", "3", "--window-days", "7")
    assert code == 0, out
    assert "policy 1: coach-all (bike)" in out and "4 treatment, 4 control" in out
    code, out = run(cloud, "list", "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)] == ["coach-all"]
    code, out = run(cloud, "show", "1")
    assert code == 0 and "rides_per_week, goal increase" in out
    code, out = run(cloud, "stop", "1", "--json")
    assert code == 0 and json.loads(out)["state"] == "stopped"
    # its devices are free again: a second policy from a file, a flag overriding it
    policy = cloud.home / "policy.json"
    policy.write_text(json.dumps({
        "name": "easy-programme", "product": "bike", "devices": ["bike-1", "bike-2"],
        "change": {"programme": 1}, "outcome": {"kpi": "power_mean_w", "goal": "decrease"}}))
    code, out = run(cloud, "create", "--file", str(policy), "--seed", "5", "--json")
    assert code == 0, out
    got = json.loads(out)
    assert sorted(got["treatment"] + got["control"]) == ["bike-1", "bike-2"]
    assert got["seed"] == 5 and got["outcome"] == {"kpi": "power_mean_w", "goal": "decrease"}
    code, out = run(cloud, "stop", "1")
    assert code == 1 and "409" in out and "nothing to stop" in out


@pytest.mark.parametrize(("args", "code", "words"), [
    (["create", "--name", "x", "--product", "bike", "--set", "coach_mode=1",
      "--outcome", "rides_per_fortnight"], 1, "refused: unknown KPI 'rides_per_fortnight'"),
    (["create", "--name", "x", "--product", "bike", "--set", "coach_mode=9",
      "--outcome", "rides_per_week"], 1, "coach_mode must be an int in 0..1"),
    (["create", "--name", "x", "--product", "bike", "--outcome", "rides_per_week"], 2,
     "a policy needs --set"),
    (["create", "--name", "x", "--product", "bike", "--set", "coach_mode=1",
      "--outcome", "rides_per_week", "--when", "rides_per_week dropped 3"], 2, "--when wants"),
    (["create", "--file", "/nonexistent/policy.json"], 2, "cannot read"),
    (["create", "--name", "x", "--product", "bike", "--set", "coach_mode",
      "--outcome", "rides_per_week"], 2, "--set wants name=integer"),
    (["show", "99"], 1, "404"),
])
def test_bad_input_says_why(cloud: Stack, args: list[str], code: int, words: str) -> None:
    got, out = run(cloud, *args)
    assert got == code and words in out, out
