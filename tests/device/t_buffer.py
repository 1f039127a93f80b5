# Durable buffer: seq continuity, torn tails, acks deleting segments, bounded capacity.
import json
import os

from fakes import check, equal

from device import buffer


def _open(tmp, seg=5, segs=4):
    b = buffer.Buffer(tmp + "/buf", "bike-1", seg, segs)
    b.open()
    return b


def _fill(b, n):
    return [b.put(1700000000000 + i, {"n": i, "ok": True}) for i in range(n)]


def _segments(tmp):
    return sorted(n for n in os.listdir(tmp + "/buf") if n.startswith("seg-"))


def test_put_returns_increasing_seqs_and_unacked_yields_wire_records(tmp):
    b = _open(tmp)
    equal(_fill(b, 12), list(range(1, 13)), "seqs")
    got = list(b.unacked(0, 100))
    equal([s for s, _ in got], list(range(1, 13)), "all unacked, oldest first")
    first = json.loads(got[0][1])
    equal((first["s"], first["d"], first["m"]["n"]), (1, "bike-1", 0), "payload is the record")
    equal([s for s, _ in b.unacked(7, 3)], [8, 9, 10], "after + limit")
    equal(b.buffered, 12, "buffered")
    equal(_segments(tmp), ["seg-0000000001.log", "seg-0000000006.log", "seg-0000000011.log"],
          "5 records per segment")


def test_seq_continues_after_reopen(tmp):
    b = _open(tmp)
    _fill(b, 7)
    b.close()
    b = _open(tmp)
    equal((b.last, b.buffered), (7, 7), "state after reopen")
    equal(_fill(b, 2), [8, 9], "seq continues")


def test_ack_deletes_whole_segments_and_seq_survives_empty_buffer(tmp):
    b = _open(tmp)
    _fill(b, 12)
    check(b.ack(7), "ack is news")
    check(not b.ack(5), "older ack ignored")
    equal(_segments(tmp), ["seg-0000000006.log", "seg-0000000011.log"], "first segment gone")
    equal([s for s, _ in b.unacked(0, 100)], [8, 9, 10, 11, 12], "unacked after ack")
    b.ack(12)
    equal(_segments(tmp), [], "all segments gone")
    equal(b.buffered, 0, "empty")
    # no close(): as if the power went out; acked was persisted before deleting segments
    b = _open(tmp)
    equal(b.put(1, {"x": 1}), 13, "seq never repeats even with no record left on flash")


def test_ack_beyond_last_is_clamped(tmp):
    b = _open(tmp)
    _fill(b, 3)
    b.ack(100)
    equal(b.acked, 3, "cannot ack what was never written")
    equal(b.put(1, {"x": 1}), 4, "next seq")


def _append(tmp, name, data):
    with open(tmp + "/buf/" + name, "ab") as f:
        f.write(data)


def test_torn_tail_is_cut_at_open(tmp):
    b = _open(tmp)
    _fill(b, 8)
    b._f.close()
    _append(tmp, "seg-0000000006.log", b'1234abcd {"v":1,"d":"bike-1","s":9,"t":1,"m":{')
    b = _open(tmp)
    equal((b.last, b.repaired), (8, 1), "torn line dropped")
    equal(b.put(5, {"x": 1}), 9, "seq 9 reused: it never left the device")
    equal([s for s, _ in b.unacked(0, 100)], list(range(1, 10)), "log intact")


def test_bad_checksum_and_wrong_seq_lines_are_cut(tmp):
    b = _open(tmp)
    _fill(b, 2)
    b._f.close()
    good = list(b.unacked(1, 1))[0][1]
    _append(tmp, "seg-0000000001.log", b"00000000 " + good + b"\n")  # bad crc
    b = _open(tmp)
    equal((b.last, b.repaired), (2, 1), "bad crc")
    b._f = None
    # a valid line with the wrong seq (2 again instead of 3)
    import binascii

    _append(tmp, "seg-0000000001.log", b"%08x " % binascii.crc32(good) + good + b"\n")
    b = _open(tmp)
    equal((b.last, b.repaired), (2, 1), "duplicate seq")


def test_empty_new_segment_left_by_power_loss(tmp):
    b = _open(tmp)
    _fill(b, 5)
    b._f.close()
    _append(tmp, "seg-0000000006.log", b"")  # created, nothing written
    b = _open(tmp)
    equal((b.last, b.segs), (5, [1]), "empty segment removed")
    equal(b.put(1, {"x": 1}), 6, "next seq")


def test_capacity_drops_oldest_segment_and_counts(tmp):
    b = _open(tmp, seg=5, segs=3)
    _fill(b, 15)
    equal(b.dropped, 0, "full, nothing dropped yet")
    b.put(1, {"x": 1})  # needs a 4th segment: seqs 1-5 go
    equal((b.dropped, b.buffered, b.segs), (5, 11, [6, 11, 16]), "dropped oldest")
    b.ack(7)
    _fill(b, 5)  # seqs 17-20 fill segment 16; 21 needs a new one: drops 6-10 (8, 9, 10 unacked)
    equal(b.dropped, 8, "only unacked records count as dropped")
    b = _open(tmp, seg=5, segs=3)
    equal(b.dropped, 8, "dropped persisted")
    equal([s for s, _ in b.unacked(0, 3)], [11, 12, 13], "oldest left")


def test_refused_record_writes_nothing(tmp):
    b = _open(tmp)
    for bad in ({"Bad": 1}, {"x": "s"}, {"x": float("nan")}, {"x": None}):
        try:
            b.put(1, bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    equal((b.last, b.put(1, {"x": 1})), (0, 1), "no seq consumed")


def test_stale_tmp_files_are_removed(tmp):
    b = _open(tmp)
    _fill(b, 1)
    b.close()
    _append(tmp, "meta.json.tmp", b"{")
    b = _open(tmp)
    check("meta.json.tmp" not in os.listdir(tmp + "/buf"), "tmp removed")


def test_a_never_used_buffer_waits_for_the_gateway_then_continues_after_it(tmp):
    b = _open(tmp)
    check(b.fresh, "a new buffer is fresh")
    b.rebase(40)  # the gateway already holds this id's records up to 40 (a wiped device)
    check(not b.fresh, "fresh only until the first ack")
    equal(_fill(b, 2), [41, 42], "seqs continue after the gateway's")
    b.close()
    again = _open(tmp)
    check(not again.fresh, "a rebased buffer stays rebased after a reboot")
    equal(_fill(again, 1), [43], "and keeps counting")


def test_a_buffer_with_records_is_not_fresh_even_before_any_ack(tmp):
    b = _open(tmp)
    _fill(b, 3)
    b.close()
    check(not _open(tmp).fresh, "records on flash: seqs are known")
