"""`fleetloop bench cloud` stays runnable: a tiny run on SQLite through the real CLI, every
record counted once, the figures filled in (`make bench` runs the full size on both backends)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fleetloop.cli import app

pytestmark = pytest.mark.e2e


def test_bench_cloud_counts_every_record_once() -> None:
    result = CliRunner().invoke(app, ["bench", "cloud", "--gateways", "2", "--batches", "2",
                                      "--records", "40", "--no-postgres", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    (run,) = out["runs"]
    assert (run["backend"], run["workers"], run["records"], run["exactly_once"]) == (
        "sqlite", 1, 160, True)
    assert run["records_per_s"] > 0 and out["parse_records_per_s"] > 0 and out["cores"] >= 1
    assert run["of_parse"] == round(run["records_per_s"] / out["parse_records_per_s"], 3)
    # the cloud's CPU during the uploads was measured (it verified and stored 160 records)
    assert run["cpu_us_per_record"] > 0
    # the 30-day plot: one record a minute, every one counted in the buckets, in the
    # dashboard's default resolution and the finest the API allows
    assert [(p["backend"], p["records"], p["points"]) for p in out["plots"]] == [
        ("sqlite", 43200, 300), ("sqlite", 43200, 2000)]
    assert all(p["median_ms"] > 0 and 0 < p["buckets"] <= p["points"] for p in out["plots"])
