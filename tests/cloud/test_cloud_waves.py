"""A rollout's plan as plain arithmetic (cloud.services.waves): wave sizes, the seeded order
and the failure threshold."""

from __future__ import annotations

from cloud.services import waves


def test_every_wave_gets_a_device_while_devices_remain() -> None:
    assert waves.sizes(7, [1, 10, 50, 100]) == [(1, 1), (10, 1), (50, 2), (100, 3)]
    assert waves.sizes(2, [1, 10, 50, 100]) == [(1, 1), (10, 1)]  # empty waves dropped
    assert waves.sizes(1000, [1, 10, 50, 100]) == [(1, 10), (10, 90), (50, 400), (100, 500)]
    assert waves.sizes(30, [10, 100]) == [(10, 3), (100, 27)]  # exact: no float round-up
    assert waves.sizes(3, [0.5, 100]) == [(0.5, 1), (100, 2)]
    for n in range(1, 60):
        assert sum(size for _, size in waves.sizes(n, [1, 10, 50, 100])) == n


def test_the_order_is_a_seeded_spread() -> None:
    ids = [f"bike-{i}" for i in range(1, 201)]
    first = waves.order("r-1", ids)
    assert sorted(first) == sorted(ids) and waves.order("r-1", reversed(ids)) == first
    assert first != sorted(ids) and waves.order("r-2", ids) != first
    assert first[:2] != waves.order("r-2", ids)[:2]


def test_bad_waves_and_the_threshold() -> None:
    assert waves.check([1, 10, 50, 100]) == []
    assert waves.check([]) == ["waves: 1..20 percentages"]
    assert waves.check([50, 10, 100]) == ["waves: percentages must rise from one wave to the next"]
    assert waves.check([0, 100]) == ["waves: each percentage in (0, 100]"]
    assert waves.check([10, 50]) == ["waves: the last wave must be 100 (every device)"]
    assert waves.crossed(1, 10, 0.1) is False and waves.crossed(2, 10, 0.1) is True
    assert waves.crossed(2, 10, 0.1, accepted=2) is False  # ops accepted these two
    assert waves.crossed(3, 10, 0.1, accepted=2) is True
    assert waves.describe(1, 2, 5, 0.1) == "wave 1: 2 of 5 failed (40% > 10%)"


def test_the_api_names_exactly_the_protocols_words_and_the_states() -> None:
    from typing import get_args

    from cloud.rollout_schemas import State, Word
    from cloud.services.progress import STATES
    from protocol import ota

    assert get_args(Word) == ota.STATUSES and get_args(State) == STATES
