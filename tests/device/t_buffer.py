# Durable buffer: seq continuity, torn tails, acks deleting segments, bounded capacity.
import json
import os

from fakes import check, equal, raises

from device import buffer, codec
from device import consent as dconsent
from protocol import record, tag

MAC = tag.Hmac(b"\x07" * 32)


def _open(tmp, seg=5, segs=4):
    b = buffer.Buffer(tmp + "/buf", "bike-1", codec.mac_key(b"\x07" * 32), seg, segs)
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
    equal((first["s"], first["d"], first["m"]["n"], first["i"]), (1, "bike-1", 0, b.incarnation),
          "payload is the record")
    for seq, wire in got:
        record.decode(wire)
        check(tag.verify(MAC, wire), "every record is tagged with the device's key")
        equal(wire, record.encode("bike-1", b.incarnation, seq, 1700000000000 + seq - 1,
                                  {"n": seq - 1, "ok": True}, MAC), "protocol's bytes")
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
    _append(tmp, "seg-0000000006.log", b'1234abcd {"v":2,"d":"bike-1","i":5,"s":9,"t":1,"m":{')
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


def test_a_new_buffer_draws_an_incarnation_keeps_it_and_samples_from_seq_1(tmp):
    b = _open(tmp)
    inc = b.incarnation
    check(0 < inc <= 2 ** 31 - 1, "incarnation in 1..2**31-1: " + str(inc))
    meta = json.loads(open(tmp + "/buf/meta.json").read())
    equal(meta["i"], inc, "persisted before the first record")
    equal(_fill(b, 2), [1, 2], "a new device samples at once, from seq 1")
    b.ack(2)
    b.close()
    again = _open(tmp)
    equal(again.incarnation, inc, "kept across reboots")
    equal(_fill(again, 1), [3], "and seqs continue")
    equal(json.loads(list(again.unacked(0, 1))[0][1])["i"], inc, "records carry it")


def test_a_wiped_buffer_is_a_new_incarnation(tmp):
    b = _open(tmp)
    _fill(b, 3)
    b.close()
    first = b.incarnation
    for name in os.listdir(tmp + "/buf"):
        os.remove(tmp + "/buf/" + name)
    wiped = _open(tmp)
    check(wiped.incarnation != first, "a new incarnation (1 in 2**31 to collide)")
    equal(_fill(wiped, 1), [1], "seq 1 again: (device, incarnation, seq) is new")


def test_a_version_1_buffer_starts_a_new_incarnation_counting_its_records_dropped(tmp):
    os.mkdir(tmp + "/buf")
    with open(tmp + "/buf/meta.json", "w") as f:
        f.write('{"acked": 2, "dropped": 1}')
    import binascii

    with open(tmp + "/buf/seg-0000000001.log", "wb") as f:
        for seq in range(1, 6):
            line = b'{"v":1,"d":"bike-1","s":%d,"t":1,"m":{}}' % seq
            f.write(b"%08x " % binascii.crc32(line) + line + b"\n")
    b = _open(tmp)
    check(b.incarnation > 0, "incarnation drawn")
    equal((b.dropped, b.buffered, b.acked, b.last, b.segs), (4, 0, 0, 0, []),
          "3 unacked v1 records dropped")
    equal(_fill(b, 1), [1], "the new incarnation starts at 1")


def test_consent_records_share_the_stream_and_bytes_are_counted(tmp):
    b = _open(tmp)
    equal(b.bytes, 0, "empty")
    _fill(b, 3)
    signed = dconsent.signed_consent(b.prefix, b.next_seq, 1700000000500, "usage", "device", 2)
    equal(b.put_signed(signed), 4, "the next seq")
    raises(ValueError, b.put_signed, signed)  # seq 4 again: refused, nothing written
    _fill(b, 3)
    got = dict(b.unacked(0, 100))
    equal(sorted(got), list(range(1, 8)), "one stream")
    equal(got[4], record.encode_consent("bike-1", b.incarnation, 4, 1700000000500, "usage",
                                        "device", 2, MAC), "protocol's consent record")
    check(tag.verify(MAC, got[4]), "tagged")

    def on_flash():
        return sum(os.stat(tmp + "/buf/" + n)[6] for n in _segments(tmp))

    equal(b.bytes, on_flash(), "bytes on flash")
    b.ack(5)
    equal(b.bytes, on_flash(), "after an ack deleted a segment")
    b.close()
    b = _open(tmp)
    equal(b.bytes, on_flash(), "after reopen")
    _fill(b, 30)  # past capacity: the oldest segments dropped
    equal(b.bytes, on_flash(), "after drops")
    b.ack(b.last)
    equal((b.bytes, on_flash()), (0, 0), "all acked")
