"""The units held out for the fleet: a fixed fifth of FD001 spanning short and long lives, and
ones the fleet simulator can be told to replay."""

from __future__ import annotations

from cloud.loop import holdout
from fleetloop.fleet.behaviour import build
from fleetloop.fleet.draws import WEEK_MS
from fleetloop.fleet.truth import Truth
from fleetloop.loop_cli import training_table

START = 1_780_000_000_000


def test_the_held_out_units_are_a_fixed_fifth_across_all_lives() -> None:
    assert holdout.FLEET_UNITS == (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80,
                                   85, 90, 95, 100)
    assert set(holdout.FLEET_UNITS) | set(holdout.TRAIN_UNITS) == set(holdout.ALL_UNITS)
    table = training_table(None)
    lives = dict(zip(table.unit_ids.tolist(), table.lives().tolist(), strict=True))
    held = sorted(lives[u] for u in holdout.FLEET_UNITS)
    assert held[0] < 160 and held[-1] > 280  # short-lived and long-lived engines both held out


def test_the_simulator_replays_only_held_out_units_when_told() -> None:
    end = START + 4 * WEEK_MS
    truth = Truth(11, START, end, 1.0)
    for i in range(12):
        build(f"engine-{i:05d}", "engine", 11, START, end, truth, units=holdout.FLEET_UNITS)
    first = {dev.traits["first_unit"] for dev in truth.devices.values()}
    assert first and first <= set(holdout.FLEET_UNITS)
