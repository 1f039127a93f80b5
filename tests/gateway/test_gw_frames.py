"""Frames (protocol.frame): several records in one telemetry message. The real gateway accepts
them next to single records; one bad record of a frame is refused alone, a frame beyond its
bounds is refused whole, and other devices flow meanwhile."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gwkit import ROOT, Device, FakeCloud, RunningGateway, gateway_settings, wait_for
from hypothesis import given
from hypothesis import strategies as st

from protocol import frame
from protocol.bounds import MAX_FRAME_BYTES, MAX_FRAME_RECORDS

GatewayStarter = Callable[..., RunningGateway]
DeviceMaker = Callable[..., Device]


def _frame(records: list[bytes]) -> bytes:
    """The frame's bytes, built by hand: protocol.frame.encode refuses empty records."""
    return b"".join(r + b"\n" for r in records)


def test_frames_and_single_records_are_stored_once_and_acked(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    topic = "fleet/bike-1/telemetry"
    bike.publish(topic, _frame([bike.record(s) for s in range(1, 9)]))
    bike.send(9)
    bike.publish(topic, _frame([bike.record(s) for s in range(10, 10 + MAX_FRAME_RECORDS)]))
    last = 9 + MAX_FRAME_RECORDS
    bike.publish(topic, _frame([bike.record(s) for s in (5, 6, last + 1)]))  # 2 seen again
    wait_for(lambda: bike.acked == last + 1, 10, f"ack {last + 1}")
    wait_for(lambda: len(cloud.records) == last + 1, 15, "every record in the cloud")
    assert cloud.seqs("bike-1") == list(range(1, last + 2))
    assert cloud.duplicate_records == 0 and not cloud.refusals
    ingest = gw.status()["ingest"]
    assert (ingest["records"], ingest["duplicates"], ingest["rejected"]) == (last + 1, 2, 0)


def test_one_bad_record_in_a_frame_is_refused_alone(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    other = devices(home, "bike-2", gw.port)
    topic = "fleet/bike-1/telemetry"
    invalid = json.loads((ROOT / "tests" / "vectors" / "records.json").read_text())["invalid"]
    bad = [v["wire"].encode() for v in invalid if b"\n" not in v["wire"].encode()]
    bad += [b"", bike.record(99).replace(b'"bike-1"', b'"bike-2"')]  # empty, another's id
    seq = 0
    for payload in bad:  # each bad record between two good ones
        bike.publish(topic, _frame([bike.record(seq + 1), payload, bike.record(seq + 2)]))
        other.send(seq // 2 + 1)
        seq += 2
    too_many = [bike.record(1000 + n) for n in range(MAX_FRAME_RECORDS + 1)]
    bike.publish(topic, b"\n".join(too_many) + b"\n")  # refused whole
    big = bike.record(seq + 1, **{f"m{n}": n for n in range(30)})
    bike.publish(topic, (big + b"\n") * (MAX_FRAME_BYTES // len(big) + 1))  # refused whole
    wait_for(lambda: bike.acked == seq, 15, f"ack {seq}")
    wait_for(lambda: other.acked == len(bad), 15, f"the other device acked {len(bad)}")
    wait_for(lambda: len(cloud.records) == seq + len(bad), 15, "the good records in the cloud")
    assert cloud.seqs("bike-1") == list(range(1, seq + 1))
    status = gw.status()["ingest"]
    assert status["rejected"] == len(bad) + 2
    reasons = " ".join(status["reject_reasons"])
    assert "frame has too many records" in reasons and "frame too large" in reasons


_record = st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b)


@given(st.lists(_record, min_size=1, max_size=MAX_FRAME_RECORDS))
def test_a_frame_splits_into_exactly_its_records(records: list[bytes]) -> None:
    assert frame.split(frame.encode(records)) == records


@given(st.binary(max_size=3 * MAX_FRAME_BYTES // 2))
def test_any_payload_is_a_bounded_frame_or_refused(payload: bytes) -> None:
    try:
        parts = frame.split(payload)
    except ValueError:
        assert not frame.is_frame(payload) or len(payload) > MAX_FRAME_BYTES \
            or payload.count(b"\n") > MAX_FRAME_RECORDS
        return
    assert 1 <= len(parts) <= MAX_FRAME_RECORDS
    assert b"".join(p + b"\n" for p in parts) == payload
