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
