# Profiles: deterministic per device id, realistic ranges, valid records.
from fakes import check, equal

from device import codec
from device.profiles import load


def _series(name, dev, n):
    p = load(name, dev)
    return [p.sample() for _ in range(n)]


def test_same_id_same_series_other_id_other_series(tmp):
    for name in ("bike", "mirror", "engine"):
        a = _series(name, "dev-1", 30)
        equal(a, _series(name, "dev-1", 30), name + " deterministic")
        check(a != _series(name, "dev-2", 30), name + " differs per device")


def test_bike_ranges(tmp):
    for m in _series("bike", "bike-9", 500):
        check(40 <= m["cadence"] <= 110, f"cadence {m!r}")
        check(40 <= m["power"] <= 450, f"power {m!r}")
        check(10 <= m["speed"] <= 60, f"speed {m!r}")
        check(60 <= m["heart_rate"] <= 190, f"hr {m!r}")


def test_mirror_sessions(tmp):
    seen = set()
    reps = 0
    for m in _series("mirror", "mirror-3", 2000):
        seen.add(m["session_active"])
        reps = max(reps, m["reps"])
        check(0 <= m["brightness"] <= 100 and 15 <= m["room_temp"] <= 30, f"ranges {m!r}")
    equal(seen, {True, False}, "sessions start and end")
    check(reps > 5, "reps counted")


def test_engine_replays_cmapss_rows(tmp):
    rows = _series("engine", "engine-1", 5)
    unit = rows[0]["engine_unit"]
    equal([r["cycle"] for r in rows], [1, 2, 3, 4, 5], "cycles in order from the first")
    equal([r["engine_unit"] for r in rows], [unit] * 5, "one unit")
    check(1 <= unit <= 100, "unit of FD001")
    for r in rows:
        check(640 < r["t24"] < 645 and 1570 < r["t30"] < 1620 and 9000 < r["nc"] < 9300,
              f"sensor ranges {r!r}")
        equal(len(r), 16, "unit, cycle and 14 sensors")


def test_engine_flies_to_failure_then_starts_over_overhauled(tmp):
    p = load("engine", "engine-1")
    first = p.sample()
    cycles = [first["cycle"]]
    while len(cycles) < 400:  # FD001 units run 128-362 cycles
        s = p.sample()
        equal(s["engine_unit"], first["engine_unit"], "its own engine only")
        if s["cycle"] == 1:
            break
        cycles.append(s["cycle"])
    check(128 <= len(cycles) <= 362, "a whole run to failure: " + str(len(cycles)))
    equal(cycles, list(range(1, len(cycles) + 1)), "every flight, in order")
    p.close()
    again = load("engine", "engine-1", len(cycles) + 2)
    equal(again.sample()["cycle"], 3, "resumes after overhauls too")
    again.close()


def test_samples_encode_as_records(tmp):
    prefix = codec.record_prefix("x", 2 ** 31 - 1)
    for name in ("bike", "mirror", "engine"):
        for i, m in enumerate(_series(name, "x", 20)):
            check(len(codec.signed_record(prefix, i + 1, 0, m)) + 40 < 640, "small records")


def test_engine_resumes_where_it_left_off_after_a_reboot(tmp):
    p = load("engine", "engine-1")
    cycles = [p.sample()["cycle"] for _ in range(10)]
    p.close()
    resumed = load("engine", "engine-1", 7)
    equal(resumed.sample()["cycle"], cycles[7], "the 8th flight after 7 reported ones")
    resumed.close()
