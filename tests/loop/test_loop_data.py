"""Reading NASA's files: the sensors are the engine profile's, and a missing or malformed file
is a clear EngineDataError (never another exception)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.loop import data
from cloud.loop.errors import EngineDataError
from device.profiles import engine
from fleetloop.fleet import engines as fleet_engines

REPO = Path(__file__).resolve().parents[2]
NASA = REPO.parent / "shared" / "datasets" / "cmapss-fd001" / "train_FD001.txt"
ROW = "1 {c} -0.0007 -0.0004 100 518.67 641.82 1589.7 1400.6 14.62 21.61 554.36 2388.06 " \
      "9046.19 1.3 47.47 521.66 2388.02 8138.62 8.4195 0.03 392 2388 100 39.06 23.419"


def test_the_sensors_are_the_engine_profiles() -> None:
    assert data.SENSORS == engine.SENSORS == fleet_engines.SENSORS
    assert data.COLUMNS == engine.COLUMNS


def test_a_row_reads_as_the_profile_reports_it(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text(ROW.format(c=1) + "\n" + ROW.format(c=2) + "\n")
    t = data.read_trajectories(f)
    assert t.units.tolist() == [1, 1] and t.cycles.tolist() == [1, 2]
    assert dict(zip(data.SENSORS, t.sensors[0].tolist(), strict=True)) == {
        "t24": 641.82, "t30": 1589.7, "t50": 1400.6, "p30": 554.36, "nf": 2388.06,
        "nc": 9046.19, "ps30": 47.47, "phi": 521.66, "nrf": 2388.02, "nrc": 8138.62,
        "bpr": 8.4195, "htbleed": 392.0, "w31": 39.06, "w32": 23.419}


@pytest.mark.skipif(not NASA.is_file(), reason="NASA's text file is not beside this clone")
def test_nasas_file_and_the_packed_copy_are_the_same_table() -> None:
    from fleetloop.loop_cli import training_table

    text = data.read_trajectories(NASA)
    assert len(text.unit_ids) == 100 and len(text.units) == 20631
    assert text.sha256() == training_table(None).sha256()


@pytest.mark.parametrize(("content", "reason"), [
    ("", "empty"),
    (ROW.format(c=1).rsplit(" ", 1)[0], "has 25 columns"),
    (ROW.format(c=1).replace("641.82", "hot"), "not numbers"),
    (ROW.format(c=1) + "\n" + ROW.format(c=3), "without gaps"),
    (ROW.format(c=2), "without gaps"),
    (ROW.format(c=1.5), "whole numbers"),
    (ROW.format(c=1).replace("641.82", "nan"), "finite"),
])
def test_malformed_trajectories_are_refused(tmp_path: Path, content: str, reason: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(EngineDataError, match=reason):
        data.read_trajectories(f)


def test_missing_and_binary_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineDataError, match="cannot read"):
        data.read_trajectories(tmp_path / "absent.txt")
    (tmp_path / "bin").write_bytes(b"\x89PNG\xff\x00")
    with pytest.raises(EngineDataError, match="not a text file"):
        data.read_trajectories(tmp_path / "bin")


@pytest.mark.parametrize(("content", "reason"), [
    ("112\n98\n", "2 remaining lives for 3"),
    ("112\n-1\n69\n", ">= 0"),
    ("112\n9.5\n69\n", "whole number"),
    ("112 3\n98\n69\n", "whole number"),
])
def test_malformed_rul_files_are_refused(tmp_path: Path, content: str, reason: str) -> None:
    f = tmp_path / "RUL.txt"
    f.write_text(content)
    with pytest.raises(EngineDataError, match=reason):
        data.read_rul(f, engines=3)


def test_a_good_rul_file_reads(tmp_path: Path) -> None:
    f = tmp_path / "RUL.txt"
    f.write_text("112\n98\n\n69\n")
    assert data.read_rul(f, 3).tolist() == [112, 98, 69]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from("0123456789 .-e\nnaif"), max_size=400))
def test_any_text_is_a_table_or_an_engine_data_error(tmp_path: Path, text: str) -> None:
    f = tmp_path / "fuzz.txt"
    f.write_text(text)
    try:
        t = data.read_trajectories(f)
    except EngineDataError:
        return
    assert len(t.units) > 0 and np.isfinite(t.sensors).all()


def test_huge_unit_ids_are_refused_not_wrapped(tmp_path: Path) -> None:
    f = tmp_path / "big.txt"
    f.write_text(ROW.format(c=1).replace("1 ", "1e300 ", 1))
    with pytest.raises(EngineDataError, match="whole numbers"):
        data.read_trajectories(f)
