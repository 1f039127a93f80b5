"""The composed `fleetloop` CLI answers bad input with a clear message and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetloop.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--id", "bike-9", "--profile", "bike"], "fleetloop fw keygen"),
        (["--id", "bike-1", "--profile", "toaster"], "unknown profile"),
        (["--id", "bike-1", "--profile", "bike", "--broker", "nope"], "HOST:PORT"),
        (["--id", "bike-1", "--profile", "bike", "--interpreter", "lua"], "micropython, cpython"),
        (["--id", "bike/1", "--profile", "bike"], "invalid device id"),
    ],
)
def test_device_run_refuses_bad_input_clearly(tmp_path: Path, args: list[str], says: str) -> None:
    if "bike-9" not in args:
        from fwtool.keys import generate

        generate(tmp_path, ["gw-1"], ["bike-1"])
    result = runner.invoke(app, ["device", "run", "--home", str(tmp_path), *args])
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output


def test_bench_refuses_more_records_than_a_publisher_can_number() -> None:
    result = runner.invoke(app, ["bench", "path", "--records", "70000"])
    assert result.exit_code == 2
    assert "60000" in result.output
