"""Simulated behaviours (fleetloop.fleet): what they do is what the truth says, the truth says
what the traits promise, and the settings change behaviour the way the brief of each product
says. Driven by drive(), the same loop the device runs: sample each interval, rest when idle.

Most tests sample every 10 minutes: counts of rides do not depend on the interval, and it keeps
the many-rider tests fast.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from cloud.loop.holdout import FLEET_UNITS
from device.profiles import engine as engine_profile
from device.settings import DEFAULTS
from fleetloop.fleet import engines
from fleetloop.fleet.behaviour import Behaviour, build, drive
from fleetloop.fleet.draws import DAY_MS, WEEK_MS
from fleetloop.fleet.options import OptionError, Options
from fleetloop.fleet.truth import Truth, TruthError
from protocol import record, tag
from protocol.consent import METRIC_TIERS

START = 1_780_000_000_000  # a Thursday, 2026-05-28 20:26:40 UTC: not aligned to anything
SEED = 11
COARSE = {**DEFAULTS, "interval_ms": 600_000}
MINUTELY = {**DEFAULTS, "interval_ms": 60_000}


def span(weeks: float) -> int:
    return START + int(weeks * WEEK_MS)


def fleet(product: str, n: int, weeks: float, settings: Any = COARSE, seed: int = SEED,
          **kw: Any) -> tuple[Truth, dict[str, list[tuple[int, dict[str, Any]]]]]:
    """Build and drive n devices of one product; the truth and every device's samples."""
    end = span(weeks)
    truth = Truth(seed, START, end, 1000.0)
    samples = {}
    for i in range(n):
        name = f"{product}-{i:05d}"
        samples[name] = list(drive(build(name, product, seed, START, end, truth, **kw),
                                   START, end, settings))
    return truth, samples


def rides_between(truth: Truth, device: str, low: int, high: int) -> int:
    return sum(1 for e in truth.events("ride", device) if low <= e["t"] < high)


def switched_at(week: float, **changed: int) -> Any:
    """Settings that change to `changed` at `week` (a signed config arriving part-way)."""
    after = {**COARSE, **changed}
    return lambda t: after if t >= span(week) else COARSE


# -- every product -------------------------------------------------------------------------------

@pytest.mark.parametrize("product", ["bike", "mirror", "engine"])
def test_same_seed_same_traits_and_events_other_seed_other(product: str) -> None:
    a, samples_a = fleet(product, 6, 3, MINUTELY)
    b, samples_b = fleet(product, 6, 3, MINUTELY)
    c, _ = fleet(product, 6, 3, MINUTELY, seed=SEED + 1)
    assert a.to_json() == b.to_json()
    assert samples_a == samples_b
    assert a.events(), "nothing happened in three weeks"
    assert [d.traits for d in a.devices.values()] != [d.traits for d in c.devices.values()]


@pytest.mark.parametrize("product", ["bike", "mirror", "engine"])
def test_every_sample_encodes_as_a_record_inside_the_span(product: str) -> None:
    truth, samples = fleet(product, 8, 2, MINUTELY)
    mac = tag.Hmac(b"k" * 32)
    names = set(METRIC_TIERS[product])
    count = 0
    for device, series in samples.items():
        for seq, (t, metrics) in enumerate(series, 1):
            assert truth.start_ms <= t <= truth.end_ms
            assert set(metrics) == names
            record.decode(record.encode(device, 1, seq, t, metrics, mac))
            count += 1
    assert count > 100


def test_unknown_product_and_bad_units_are_refused_clearly() -> None:
    truth = Truth(SEED, START, span(1), 1.0)
    with pytest.raises(ValueError, match="unknown product 'toaster'"):
        build("toaster-1", "toaster", SEED, START, span(1), truth)
    with pytest.raises(ValueError, match="no unit 101"):
        build("engine-1", "engine", SEED, START, span(1), truth, units=[5, 101])
    with pytest.raises(ValueError, match="non-empty"):
        build("engine-1", "engine", SEED, START, span(1), truth, units=[])


def test_idle_time_is_slept_through_and_sampling_is_cheap() -> None:
    # Cheap in calls, not in timed microseconds (those belong to `fleetloop bench fleet`: on
    # a loaded machine a per-call time limit fails for reasons of its own).
    truth = Truth(SEED, START, span(12), 1.0)
    bike = build("bike-00003", "bike", SEED, START, span(12), truth)
    calls = 0
    t = START
    while t <= span(12):
        calls += 1
        metrics = bike.sample(t, MINUTELY)
        t += bike.rest_ms(t, MINUTELY) if metrics is None else MINUTELY["interval_ms"]
    rides = truth.events("ride")
    ride_samples = sum(e["samples"] for e in rides)
    assert rides and ride_samples > 20 * len(rides)
    # one call per sample and about one per day and per ride besides: no idle ticking
    assert calls <= ride_samples + 12 * 7 + len(rides) + 2


@pytest.mark.parametrize("product", ["bike", "mirror"])
def test_an_activity_the_device_was_off_for_ends_unmeasured(product: str) -> None:
    """A device that stops sampling in the middle of a ride or session (it restarts for a
    config: at the simulator's speed, seconds of wall time are hours of data time) and comes
    back hours later gets no sample of that activity then: the person stopped long ago. (Found
    in the loop's proof: a ride's next sample came at 01:28 at night, a ride of its own.)"""
    truth = Truth(SEED, START, span(4), 1.0)
    device = build(f"{product}-00003", product, SEED, START, span(4), truth)
    t = START
    while device.sample(t, MINUTELY) is None:
        t += device.rest_ms(t, MINUTELY)
    first = t
    back = first + 6 * 3_600_000  # off from the first sample on, back six hours later
    assert device.sample(back, MINUTELY) is None
    (ended,) = truth.events("ride" if product == "bike" else "session")
    assert ended["t"] <= first < ended["end_ms"] < back and ended["samples"] == 1
    # a sample a little late (less than one interval after the end) still belongs to it
    truth = Truth(SEED, START, span(4), 1.0)
    device = build(f"{product}-00003", product, SEED, START, span(4), truth)
    t = START
    while device.sample(t, MINUTELY) is None:
        t += device.rest_ms(t, MINUTELY)
    (planned_end,) = [device.act_end]  # type: ignore[attr-defined]
    while t + 2 * MINUTELY["interval_ms"] <= planned_end:  # on time, up to the last one
        t += MINUTELY["interval_ms"]
        assert device.sample(t, MINUTELY) is not None
    assert device.sample(planned_end + 30_000, MINUTELY) is not None  # the last one, late


# -- bike riders ---------------------------------------------------------------------------------

def test_weekly_rides_track_the_riders_trait() -> None:
    weeks = 8
    truth, _ = fleet("bike", 160, weeks)
    steady = [d for d, dev in truth.devices.items() if not dev.traits["disengages"]]
    expected = [truth.traits(d)["rides_per_week"] for d in steady]
    seen = [len(truth.events("ride", d)) / weeks for d in steady]
    assert sum(seen) == pytest.approx(sum(expected), rel=0.08)
    # rider by rider too: the keen ones ride a lot more than the occasional ones
    keen = [s for s, e in zip(seen, expected, strict=True) if e > 4.5]
    rare = [s for s, e in zip(seen, expected, strict=True) if e < 1.5]
    assert keen and rare and min(keen) > max(rare)


def test_disengaged_riders_ride_less_in_late_weeks() -> None:
    truth, _ = fleet("bike", 240, 12)
    leavers = [d for d, dev in truth.devices.items() if dev.traits["disengages"]]
    assert 0.15 < len(leavers) / 240 < 0.35
    before = after = 0.0
    for d in leavers:
        at = truth.traits(d)["disengage_at_ms"]
        (event,) = truth.events("disengage", d)
        assert event["t"] == at
        if at + 3 * WEEK_MS > span(12):
            continue
        before += rides_between(truth, d, START, at) / ((at - START) / WEEK_MS)
        after += rides_between(truth, d, at + 2 * WEEK_MS, span(12)) / (
            (span(12) - at - 2 * WEEK_MS) / WEEK_MS)
    assert after < 0.7 * before


def test_coach_mode_lifts_responders_only() -> None:
    weeks, switch = 10, 2
    plain, _ = fleet("bike", 200, weeks)
    coached, _ = fleet("bike", 200, weeks, switched_at(switch, coach_mode=1))
    gain = {True: [0, 0], False: [0, 0]}  # responder -> [rides without, rides with coach]
    for d, dev in plain.devices.items():
        responder = dev.traits["coach_responder"]
        without = rides_between(plain, d, span(switch), span(weeks))
        with_coach = rides_between(coached, d, span(switch), span(weeks))
        gain[responder][0] += without
        gain[responder][1] += with_coach
        if not responder:
            assert with_coach == without, f"{d} does not respond, yet rode differently"
            assert not coached.events("coach_response", d)
        elif with_coach:
            (first,) = coached.events("coach_response", d)
            rides = coached.events("ride", d)
            assert first["t"] == next(r["t"] for r in rides if r["coach_mode"] == 1)
            assert first["t"] >= span(switch)
        # same dice, same rides before the switch
        assert rides_between(plain, d, START, span(switch)) == rides_between(
            coached, d, START, span(switch))
    assert gain[True][1] > 1.25 * gain[True][0]
    assert gain[False][1] == gain[False][0] > 0


def test_an_over_hard_target_lowers_rides_and_power_is_capped() -> None:
    weeks, switch = 8, 2
    plain, _ = fleet("bike", 150, weeks)
    hard, samples = fleet("bike", 150, weeks, switched_at(switch, target_power_w=2000))
    without = sum(rides_between(plain, d, span(switch), span(weeks)) for d in plain.devices)
    with_hard = sum(rides_between(hard, d, span(switch), span(weeks)) for d in hard.devices)
    assert with_hard < 0.8 * without
    for d, dev in hard.devices.items():
        (event,) = hard.events("overreached", d)
        assert span(switch) <= event["t"] <= span(switch) + 2 * DAY_MS
        cap = dev.traits["sustainable_w"] * 1.04 + 0.05  # noise on the capped level, rounding
        assert all(m["power"] <= cap for t, m in samples[d] if t > span(switch))


def test_the_hard_programme_overreaches_low_fitness_riders_only() -> None:
    weeks, switch = 6, 1
    plain, _ = fleet("bike", 120, weeks)
    hard, _ = fleet("bike", 120, weeks, switched_at(switch, programme=3))
    low = [d for d, dev in plain.devices.items() if dev.traits["low_fitness"]]
    assert low
    for d in plain.devices:
        same = rides_between(plain, d, START, span(weeks)) == rides_between(hard, d, START,
                                                                            span(weeks))
        if d in low:
            assert hard.events("overreached", d)
        else:
            assert same and not hard.events("overreached", d)
    fewer = sum(rides_between(hard, d, span(switch), span(weeks)) for d in low)
    assert fewer < 0.8 * sum(rides_between(plain, d, span(switch), span(weeks)) for d in low)


def test_heart_rate_lags_the_effort() -> None:
    # Sampled every 10 s, a ride's first sample shows the heart still near rest; five minutes
    # in it has caught up with the effort.
    truth, samples = fleet("bike", 6, 2, {**DEFAULTS, "interval_ms": 10_000})
    checked = 0
    for d, dev in truth.devices.items():
        for ride in truth.events("ride", d):
            series = [m for t, m in samples[d] if ride["t"] < t <= ride["end_ms"]]
            rest = dev.traits["rest_hr"]
            first, settled = series[0]["heart_rate"] - rest, series[30]["heart_rate"] - rest
            assert first < 0.5 * settled, (d, ride["t"], first, settled)
            checked += 1
    assert checked > 10


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _rides(truth: Truth, device: str, low: int, high: int) -> list[dict[str, Any]]:
    return [e for e in truth.events("ride", device) if low <= e["t"] < high]


def test_riders_who_disengage_shorten_their_rides_and_ease_off_before_they_ride_less() -> None:
    truth, _ = fleet("bike", 240, 12)
    faders = [d for d, dev in truth.devices.items() if dev.traits["fade_at_ms"] is not None]
    leavers = [d for d, dev in truth.devices.items() if dev.traits["disengages"]]
    assert set(faders) <= set(leavers)
    assert 0.65 < len(faders) / len(leavers) < 0.98, "most leavers warn, some stop abruptly"
    length, effort, rates = [], [], []
    for d in faders:
        tr = truth.traits(d)
        fade_at, onset = tr["fade_at_ms"], tr["disengage_at_ms"]
        assert START <= fade_at < onset and tr["fade_weeks"] > 0
        (event,) = truth.events("fade", d)
        assert event["t"] == fade_at and event["minutes"] == tr["fade_minutes"]
        before = _rides(truth, d, START, fade_at)
        leading = _rides(truth, d, onset - WEEK_MS, onset + WEEK_MS)  # around the onset
        if len(before) < 3 or len(leading) < 2:
            continue
        length.append(_mean([r["minutes"] for r in leading]) / _mean([r["minutes"]
                                                                      for r in before]))
        effort.append(_mean([r["mean_power_w"] for r in leading]) / _mean(
            [r["mean_power_w"] for r in before]))
        # the rate has not fallen yet when the precursors already show
        weeks_before = (fade_at - START) / WEEK_MS
        rates.append((len(_rides(truth, d, fade_at, onset)) / ((onset - fade_at) / WEEK_MS))
                     / (len(before) / weeks_before))
    assert len(length) > 15
    assert _mean(length) < 0.85 and _mean(effort) < 0.95
    assert _mean(rates) > 0.75
    # nobody else drifts like that: the same comparison at week 6 for those who stay
    stay_length, stay_effort = [], []
    for d, dev in truth.devices.items():
        if dev.traits["disengages"]:
            continue
        before, later = _rides(truth, d, START, span(5)), _rides(truth, d, span(5), span(7))
        if len(before) >= 3 and len(later) >= 2:
            stay_length.append(_mean([r["minutes"] for r in later])
                               / _mean([r["minutes"] for r in before]))
            stay_effort.append(_mean([r["mean_power_w"] for r in later])
                               / _mean([r["mean_power_w"] for r in before]))
    assert 0.9 < _mean(stay_length) < 1.05 and 0.97 < _mean(stay_effort) < 1.03


def test_busy_spells_shorten_and_thin_out_everyones_rides_for_a_while() -> None:
    truth, _ = fleet("bike", 160, 12)
    inside: list[float] = []
    outside: list[float] = []
    spells = 0
    for d, dev in truth.devices.items():
        t = dev.traits
        if t["disengages"]:
            continue  # their own slide would blur the spells'
        spells += len(t["spells"])
        for ride in truth.events("ride", d):
            share = ride["minutes"] / t["ride_minutes"]
            busy = [s for s in t["spells"] if s[0] <= ride["t"] < s[1]]
            (inside if busy else outside).append(share)
            if busy:
                assert busy[0][2] > 0 and 0 < busy[0][3] <= 1
    assert spells / 120 > 0.8, "about one spell in 12 weeks each"
    assert inside and _mean(inside) < 0.9 * _mean(outside)
    assert 0.95 < _mean(outside) < 1.05


def test_coaching_holds_a_responders_precursors_as_it_holds_the_decay() -> None:
    plain, _ = fleet("bike", 240, 12)
    coached, _ = fleet("bike", 240, 12, {**COARSE, "coach_mode": 1})
    checked = 0
    for d, dev in plain.devices.items():
        if dev.traits["fade_at_ms"] is None or dev.traits["fade_at_ms"] <= START:
            continue
        assert plain.events("fade", d)
        if dev.traits["coach_responder"]:
            assert not coached.events("fade", d) and not coached.events("disengage", d)
            checked += 1
        else:
            assert coached.events("fade", d) == plain.events("fade", d)
    assert checked > 3


# -- mirror users --------------------------------------------------------------------------------

def test_mirror_streaks_are_recorded_and_match_the_sessions() -> None:
    truth, samples = fleet("mirror", 60, 6, MINUTELY)
    ends_seen = 0
    for d in truth.devices:
        sessions = truth.events("session", d)
        ends = {e["last_day"]: e for e in truth.events("streak_end", d)}
        previous: dict[str, Any] | None = None
        for s in sessions:
            follows = previous is not None and s["day"] == previous["day"] + 1
            assert s["streak_day"] == (previous["streak_day"] + 1 if follows and previous else 1)
            if previous is not None and not follows:
                # the streak that ended with the previous session was closed the day after
                end = ends.pop(previous["day"])
                assert end["length"] == previous["streak_day"]
                assert s["t"] > end["t"] > previous["t"]
                ends_seen += 1
            previous = s
        assert len(ends) <= 1  # the last streak may have been broken before the span ended
        # a session is one run of samples, reps counting up from the start
        active = [m for _, m in samples[d]]
        assert all(m["session_active"] for m in active)
        assert sum(s["samples"] for s in sessions) == len(active)
    assert ends_seen > 20


def test_mirror_room_warms_during_a_session() -> None:
    _, samples = fleet("mirror", 4, 2, MINUTELY)
    series = next(s for s in samples.values() if len(s) > 20)
    assert series[19][1]["room_temp"] > series[0][1]["room_temp"]
    assert series[19][1]["reps"] >= series[0][1]["reps"]


def test_mirror_users_who_disengage_train_shorter_and_slower_first() -> None:
    truth, _ = fleet("mirror", 200, 12)
    length, pace, stay = [], [], []
    for d, dev in truth.devices.items():
        tr = dev.traits
        sessions = truth.events("session", d)
        if tr["fade_at_ms"] is None:
            if not tr["disengages"]:
                before = [s for s in sessions if s["t"] < span(5)]
                later = [s for s in sessions if span(5) <= s["t"] < span(7)]
                if len(before) >= 3 and len(later) >= 2:
                    stay.append(_mean([s["reps"] / s["minutes"] for s in later])
                                / _mean([s["reps"] / s["minutes"] for s in before]))
            continue
        before = [s for s in sessions if s["t"] < tr["fade_at_ms"]]
        leading = [s for s in sessions if abs(s["t"] - tr["disengage_at_ms"]) < WEEK_MS]
        if len(before) >= 3 and len(leading) >= 2:
            length.append(_mean([s["minutes"] for s in leading])
                          / _mean([s["minutes"] for s in before]))
            pace.append(_mean([s["reps"] / s["minutes"] for s in leading])
                        / _mean([s["reps"] / s["minutes"] for s in before]))
    assert len(length) > 8
    assert _mean(length) < 0.85 and _mean(pace) < 0.95
    assert 0.95 < _mean(stay) < 1.05


def test_simulated_engines_default_to_the_units_the_model_never_trained_on() -> None:
    assert Options(devices=1).engine_units == FLEET_UNITS
    with pytest.raises(OptionError, match="engine units"):
        Options(devices=1, engine_units=(5, 101)).check()
    with pytest.raises(OptionError, match="engine units"):
        Options(devices=1, engine_units=()).check()
    Options(devices=1, engine_units=None).check()  # all 100, for a demo


# -- engines -------------------------------------------------------------------------------------

def _by_failure(samples: Iterable[tuple[int, Mapping[str, Any]]], t: int) -> int:
    return next(i for i, (ts, _) in enumerate(samples) if ts == t)


def test_engine_fails_at_its_units_last_cycle_at_the_truths_time() -> None:
    data = engines.load_trajectories()
    truth, samples = fleet("engine", 40, 12, MINUTELY)
    in_span = 0
    for d, dev in truth.devices.items():
        series = samples[d]
        traits = dev.traits
        assert series[0][1]["engine_unit"] == traits["first_unit"]
        assert series[0][1]["cycle"] == traits["first_cycle"]
        for prev, cur in zip(series, series[1:], strict=False):
            assert cur[1]["cycle"] == prev[1]["cycle"] + 1 or cur[1]["cycle"] == 1
        failures = truth.events("failure", d)
        in_span += traits["fails_in_span"]
        assert bool(failures) == traits["fails_in_span"]
        for n, failure in enumerate(failures):
            i = _by_failure(series, failure["t"])
            unit, cycle = series[i][1]["engine_unit"], series[i][1]["cycle"]
            assert (unit, cycle) == (failure["unit"], failure["cycle"])
            assert cycle == len(data[unit])  # the last cycle of the real trajectory
            if n == 0:
                assert failure["t"] == traits["failure_ms"]
            if i + 1 < len(series):
                nxt = series[i + 1][1]
                assert nxt["cycle"] == 1 and nxt["engine_unit"] != unit
        for trajectory in truth.events("trajectory", d)[:len(failures)]:
            assert trajectory["expected_failure_ms"] in [f["t"] for f in failures]
    assert 0.3 <= in_span / 40 <= 0.7


def test_engine_replays_exactly_what_the_device_profile_reads() -> None:
    data = engines.load_trajectories()
    assert engines.SENSORS == engine_profile.SENSORS
    device_id = "engine-7"
    unit = zlib.crc32(device_id.encode()) % 100 + 1
    profile = engine_profile.Profile(device_id, 17)
    try:
        expected = profile.sample()
    finally:
        profile.close()
    assert dict(zip(engines.NAMES, data[unit][17], strict=True)) == expected


def test_engines_replay_only_the_units_they_are_given() -> None:
    truth, samples = fleet("engine", 10, 12, MINUTELY, units=[3, 7])
    units = {m["engine_unit"] for series in samples.values() for _, m in series}
    assert units <= {3, 7} and truth.events("failure")
    assert all(dev.traits["units"] == [3, 7] for dev in truth.devices.values())


# -- the truth file ------------------------------------------------------------------------------

def test_truth_round_trip_is_atomic_and_sorted(tmp_path: Path) -> None:
    truth, _ = fleet("bike", 5, 3)
    fleet_mirror = build("mirror-00001", "mirror", SEED, START, span(3), truth)
    list(drive(fleet_mirror, START, span(3), COARSE))
    path = tmp_path / "truth.json"
    truth.write(path)
    assert [p.name for p in tmp_path.iterdir()] == ["truth.json"]
    raw = json.loads(path.read_text())
    assert raw["version"] == 1 and raw["seed"] == SEED and raw["speed"] == 1000.0
    assert [e["t"] for e in raw["events"]] == sorted(e["t"] for e in raw["events"])
    loaded = Truth.load(path)
    assert loaded.to_json() == truth.to_json()
    assert loaded.events("session", "mirror-00001") == truth.events("session", "mirror-00001")


def test_a_bad_truth_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    path.write_text('{"version": 1, "seed": 1}')
    with pytest.raises(TruthError, match="truth.json: malformed"):
        Truth.load(path)
    path.write_text("{not json")
    with pytest.raises(TruthError, match="cannot read truth file"):
        Truth.load(path)


def test_behaviour_protocol_is_what_build_returns() -> None:
    truth = Truth(SEED, START, span(1), 1.0)
    behaviour: Behaviour = build("bike-1", "bike", SEED, START, span(1), truth)
    assert behaviour.product == "bike"
    assert behaviour.rest_ms(START, COARSE) >= 1
