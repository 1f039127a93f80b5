"""The engine's packed data is NASA's C-MAPSS FD001, value for value (CPython side)."""

from __future__ import annotations

import binascii
from pathlib import Path

import pytest

from device.profiles import build_engine_data, engine, load

REPO = Path(__file__).resolve().parents[2]
NASA = REPO.parent / "shared" / "datasets" / "cmapss-fd001" / "train_FD001.txt"


@pytest.mark.skipif(not NASA.is_file(), reason="NASA's text file is not beside this clone")
def test_packed_file_is_rebuilt_identically_from_nasas_text() -> None:
    assert build_engine_data.pack(NASA.read_text()) == build_engine_data.OUT.read_bytes()


@pytest.mark.skipif(not NASA.is_file(), reason="NASA's text file is not beside this clone")
def test_samples_are_nasas_rows_with_their_exact_decimals() -> None:
    rows = [line.split() for line in NASA.read_text().splitlines()]
    for dev in ("engine-1", "engine-42"):
        unit = binascii.crc32(dev.encode()) % 100 + 1
        mine = [r for r in rows if int(r[0]) == unit]
        p = load("engine", dev)
        for i in range(len(mine) + 2):  # one run to failure, then the overhauled engine
            r = mine[i % len(mine)]
            want = {"engine_unit": unit, "cycle": int(r[1]),
                    **{name: float(r[col]) for col, name in zip(engine.COLUMNS, engine.SENSORS, strict=True)}}
            assert p.sample() == want
        p.close()


def test_a_file_that_is_not_engine_data_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "cmapss_fd001.bin"
    bad.write_bytes(b"not a trajectory file at all")
    monkeypatch.setattr(engine, "data_path", lambda: str(bad))
    with pytest.raises(ValueError, match="not an engine trajectory"):
        engine.Profile("engine-1")
