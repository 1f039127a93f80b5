"""The aggregate record (protocol.aggregate): its window arithmetic agrees with a naive
recomputation for any values, every aggregate it makes passes its own check, and the check
refuses what no gateway should send."""

from __future__ import annotations

import base64
import json
import math
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocol import aggregate as agg
from protocol import batch as batch_codec
from protocol.bounds import MAX_COUNTER

values = st.one_of(
    st.integers(-MAX_COUNTER, MAX_COUNTER),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


def _num(v: Any) -> float:
    return float(int(v)) if type(v) is bool else float(v)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=60))
@example([5e-324, 0])  # the smallest float: a tolerance relative to the values alone is 0 there
def test_count_min_max_mean_last_agree_with_a_naive_recomputation(xs: list[Any]) -> None:
    stat = agg.Stat.first(xs[0])
    for x in xs[1:]:
        stat = stat.fold(x)
    obj = stat.to_obj()
    nums = [int(x) if type(x) is bool else x for x in xs]
    assert obj["n"] == len(xs)
    assert obj["min"] == min(nums) and obj["max"] == max(nums)
    assert obj["last"] is xs[-1] or obj["last"] == xs[-1]
    # The exact mean (rational arithmetic), so the comparison itself cannot overflow or round.
    naive = float(sum(Fraction(x) for x in nums) / len(nums))
    scale = max(abs(_num(obj["min"])), abs(_num(obj["max"])))
    assert _num(obj["min"]) <= obj["mean"] <= _num(obj["max"])
    assert math.isfinite(obj["mean"])
    # Relative to the values' size, plus a few of the smallest steps a float has (subnormals
    # round in absolute steps of math.ulp(0.0)).
    assert abs(obj["mean"] - naive) <= 4 * len(xs) * (2.0**-52 * scale + math.ulp(0.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["cadence", "power", "heart_rate", "on"]),
                                values, max_size=4), min_size=1, max_size=30),
       st.integers(0, 2**40), st.integers(1, 86400))
def test_every_aggregate_made_passes_its_check_and_survives_json(
        records: list[dict[str, Any]], t: int, window_s: int) -> None:
    stats: dict[str, agg.Stat] = {}
    for m in records:
        stats = agg.fold_metrics(stats, m)
    start = agg.window_start(t, window_s)
    assert start <= t < start + window_s * 1000 and start % (window_s * 1000) == 0
    a = agg.Aggregate("bike-1", 7, "bike", start, window_s, len(records), 3, 3 + len(records),
                      agg.RAW_SENT, stats)
    obj = json.loads(json.dumps(a.to_obj()))
    agg.check(obj)
    assert agg.Aggregate.from_obj(obj).to_obj() == a.to_obj()
    for name in stats:  # a metric's count is the records that carried it
        assert obj["m"][name]["n"] == sum(1 for m in records if name in m)


def _good() -> dict[str, Any]:
    stats = agg.fold_metrics({}, {"power": 200})
    return agg.Aggregate("bike-1", 1, "bike", 60_000, 60, 1, 5, 5, agg.RAW_LOCAL,
                         stats).to_obj()


@pytest.mark.parametrize("change, words", [
    ({"window_s": 0}, "window_s"),
    ({"start": 60_001}, "window boundary"),
    ({"raw": "maybe"}, "raw"),
    ({"first_seq": 9, "last_seq": 5}, "first_seq"),
    ({"d": "bad/id"}, "device id"),
    ({"n": 0}, "n must be"),
    ({"m": {"power": {"n": 2, "min": 1, "max": 2, "mean": 1.5, "last": 2}}}, "above the records"),
    ({"m": {"power": {"n": 1, "min": 3, "max": 2, "mean": 2.5, "last": 2}}}, "min is above"),
    ({"m": {"power": {"n": 1, "min": 1, "max": 1, "mean": "x", "last": 1}}}, "mean"),
    ({"extra": 1}, "fields"),
])
def test_the_check_refuses_with_its_reason(change: dict[str, Any], words: str) -> None:
    assert agg.problem(_good()) is None
    assert words in (agg.problem({**_good(), **change}) or "")


def test_a_batch_carries_aggregates_only_as_version_3() -> None:
    base = dict(gateway="gw-1", seq=1, prev=batch_codec.GENESIS, created_ms=1, records=())
    with pytest.raises(batch_codec.BatchError):
        batch_codec.canonical(batch_codec.Batch(**base, aggregates=(_good(),)))  # type: ignore[arg-type]
    v2 = batch_codec.canonical(batch_codec.Batch(**base))  # type: ignore[arg-type]
    assert b"aggregates" not in v2  # a gateway that summarises nothing sends version 2 bytes
    v3 = batch_codec.Batch(**base, version=3, aggregates=(_good(),))  # type: ignore[arg-type]
    assert json.loads(batch_codec.canonical(v3))["aggregates"] == [_good()]


def test_the_shared_vector_of_a_version_3_batch_verifies_and_reproduces() -> None:
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "batches.json").read_text())
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(vectors["public_key"]))
    link = vectors["aggregate_link"]
    canon = link["canonical"].encode()
    parsed, digest = batch_codec.open_sealed(zlib.compress(canon), link["signature"], key)
    assert digest == link["digest"] and parsed.prev == vectors["chain"][-1]["digest"]
    assert parsed.version == 3 and batch_codec.canonical(parsed) == canon
    (summary,) = parsed.aggregates
    assert batch_codec.aggregate_problem(summary) is None
    first = json.loads(json.loads(vectors["chain"][0]["canonical"])["records"][0])
    assert summary["d"] == first["d"] and summary["n"] == 1
    assert {k: s["mean"] for k, s in summary["m"].items()} == first["m"]
