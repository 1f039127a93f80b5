"""Durable record buffer on flash: records survive power loss until the gateway acks them.

Layout under `root` (e.g. IMAGE/data/buffer/):
  seg-0000000001.log   append-only segment, named by its first seq; one line per record:
                       b"<crc32 hex8> <record json>\n" (the record json is the exact wire payload,
                       tagged: protocol.record version 2)
  meta.json            {"i": INCARNATION, "acked": N, "dropped": M}, replaced atomically
                       (tmp + rename)
Seqs inside a segment are contiguous, so a record's seq is first_seq + line index.

Incarnation: a buffer used for the first time (a new device, or one whose flash was wiped) draws
its incarnation from the RNG (1..2**31-1) and writes it to meta.json before its first record;
the identity of a record is (device, incarnation, seq), so a wiped device starts again at seq 1
without ever repeating an identity the gateway or the cloud already hold. Every later open
keeps it. A buffer left by firmware of protocol version 1 (records, no incarnation) starts a
new incarnation too: its untagged records can no longer be delivered (the cloud refuses
untagged records of a device with a record key) and are counted as dropped.

Power loss can only tear the tail of the newest segment (nothing else is ever written in
place): open() keeps the longest valid prefix of that segment. The next seq is
max(last seq in the log, acked) + 1, so seq continues after a restart and never repeats, as long
as `acked` is on flash before any segment it covers is deleted (ack() guarantees that).
"""

import binascii
import json

from device import codec, port

META = "meta.json"
_PREFIX = "seg-"
_SUFFIX = ".log"


def _name(first):
    return "%s%010d%s" % (_PREFIX, first, _SUFFIX)


def _line_ok(line, seq):
    """True if line is a complete, checksummed record line whose seq is `seq`."""
    n = len(line)
    if n < 12 or line[n - 1] != 10 or line[8] != 32:
        return False
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return False
    payload = line[9:n - 1]
    if binascii.crc32(payload) != crc:
        return False
    # Cheap seq check without parsing JSON: the canonical record starts
    # {"v":2,"d":"..","i":I,"s":N, (a device id holds no comma or quote)
    at = payload.find(b',"s":')
    end = payload.find(b",", at + 5)
    return at > 0 and end > at and payload[at + 5:end] == str(seq).encode()


class Buffer:
    def __init__(self, root, device_id, mac, seg_records=100, max_segments=36):
        """`mac`: codec.mac_key(the device's record key), which tags every record. Full at
        seg_records * max_segments records: 3,600, an hour offline at the default interval of a
        second (a bike's records take about 550 KB of flash), then the oldest segment goes."""
        self.root = root
        self.device_id = device_id
        self.mac = mac
        self.prefix = ""  # set by open(), once the incarnation is known
        self.incarnation = 0  # set by open()
        self.seg_records = seg_records
        self.max_segments = max_segments
        self.segs = []  # first seq of each segment on flash, ascending
        self.acked = 0
        self.dropped = 0
        self.last = 0  # highest seq on flash (or acked, after its segment was deleted)
        self.tail_count = 0  # records in the newest segment
        self.repaired = 0  # lines cut from a torn tail at open()
        self.bytes = 0  # bytes the segments hold on flash (the state's buffer_bytes)
        self._saved_acked = 0
        self._f = None
        # (first seq of a segment, the seq after the last record unacked() yielded from it, its
        # byte offset there): the next call for that seq starts reading at that offset.
        self._cursor = None

    # -- lifecycle
    def open(self):
        port.makedirs(self.root)
        try:
            meta = json.loads(port.read_bytes(self._path(META)))
            self.acked = int(meta.get("acked", 0))
            self.dropped = int(meta.get("dropped", 0))
            self.incarnation = int(meta.get("i", 0))
        except (OSError, ValueError):
            pass  # first boot; a torn meta.json cannot exist (atomic replace)
        self._saved_acked = self.acked
        segs = []
        for name in port.listdir(self.root):
            if name.endswith(".tmp"):
                port.remove(self._path(name))
            elif name.startswith(_PREFIX) and name.endswith(_SUFFIX):
                try:
                    segs.append(int(name[len(_PREFIX):-len(_SUFFIX)]))
                except ValueError:
                    pass
        segs.sort()
        self.segs = segs
        self.last = self.acked
        if segs:
            self._recover_tail()
        self.bytes = 0
        for first in self.segs:
            self.bytes += port.file_size(self._path(_name(first)))
        self._delete_acked()
        if not 0 < self.incarnation <= 2147483647:
            self._begin()
        self.prefix = codec.record_prefix(self.device_id, self.incarnation)

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
        self.sync()

    def _path(self, name):
        return self.root + "/" + name

    def _recover_tail(self):
        first = self.segs[-1]
        path = self._path(_name(first))
        good = 0
        size = 0
        with open(path, "rb") as f:
            while True:
                line = f.readline()
                if not line:
                    break
                if not _line_ok(line, first + good):
                    self.repaired += 1
                    break
                good += 1
                size += len(line)
            total = size
            if self.repaired:
                total = port.file_size(path)
        if good == 0:
            port.remove(path)
            self.segs.pop()
            if self.segs:  # the previous segment was closed full, so it is intact
                prev = self.segs[-1]
                self.last = max(self.last, first - 1)
                self.tail_count = first - prev
            return
        if total != size:
            # No truncate() on MicroPython: copy the valid prefix, then rename over the original.
            with open(path, "rb") as src, open(path + ".tmp", "wb") as dst:
                left = size
                while left:
                    chunk = src.read(min(512, left))
                    dst.write(chunk)
                    left -= len(chunk)
                port.flush_durable(dst)
            port.replace(path + ".tmp", path)
        self.last = max(self.last, first + good - 1)
        self.tail_count = good

    # -- producing
    @property
    def next_seq(self):
        return self.last + 1

    def put(self, ts_ms, metrics):
        """Encode, tag, append and flush one record; returns its seq. Raises ValueError for
        metrics the record format refuses (nothing is written then)."""
        seq = self.last + 1
        return self._append(seq, codec.signed_record(self.prefix, seq, ts_ms, metrics))

    def put_signed(self, signed):
        """Tag, append and flush a record encoded elsewhere (a consent record,
        consent.signed_consent), whose seq must be next_seq; returns it. The same stream, seqs
        and acks as every record."""
        seq = self.last + 1
        if not signed.startswith(self.prefix.encode() + str(seq).encode() + b","):
            raise ValueError("a record of this buffer needs seq " + str(seq))
        return self._append(seq, signed)

    def _append(self, seq, signed):
        tag = codec.mac_tag(self.mac, signed)
        # The wire record is signed[:-1] + HEAD + tag + TAIL (protocol.tag.append): written in
        # pieces, with the checksum computed over them, so no copy of the record is made.
        body = memoryview(signed)[:-1]
        crc = binascii.crc32(codec.TAIL, binascii.crc32(tag, binascii.crc32(
            codec.HEAD, binascii.crc32(body))))
        f = self._f
        if f is None or self.tail_count >= self.seg_records:
            f = self._roll(seq)
        f.write(b"%08x " % crc)
        f.write(body)
        f.write(codec.HEAD)
        f.write(tag)
        f.write(codec.TAIL)
        f.write(b"\n")
        port.flush_durable(f)
        self.last = seq
        self.tail_count += 1
        self.bytes += len(signed) + 49  # crc + space, body, HEAD, tag, TAIL, newline
        return seq

    def _roll(self, seq):
        if self._f is not None:
            self._f.close()
            self._f = None
        if not self.segs or self.tail_count >= self.seg_records:
            if len(self.segs) >= self.max_segments:
                self._drop_oldest()
            self.segs.append(seq)
            self.tail_count = 0
        self._f = f = open(self._path(_name(self.segs[-1])), "ab")
        return f

    def _seg_last(self, i):
        return self.segs[i + 1] - 1 if i + 1 < len(self.segs) else self.last

    def _drop_oldest(self):
        """Full: forget the oldest segment, counting its unacked records as dropped."""
        first = self.segs[0]
        lost = self._seg_last(0) - max(self.acked, first - 1)
        if lost > 0:
            self.dropped += lost
        self.segs.pop(0)
        self._save_meta()
        self._remove(first)

    @property
    def floor(self):
        """Lowest seq still to be delivered; every seq below it is acked or was dropped when
        the buffer was full (the gateway stops waiting for those)."""
        first = self.segs[0] if self.segs else self.last + 1
        return max(self.acked + 1, first)

    # -- sending
    def unacked(self, after_seq, limit):
        """Yield up to `limit` (seq, payload bytes) with seq > max(after_seq, acked), oldest
        first. Reads from flash; lines failing their checksum are skipped."""
        start = max(after_seq, self.acked) + 1
        if limit <= 0 or start > self.last:
            return
        segs = self.segs
        i = len(segs) - 1
        while i > 0 and segs[i] > start:
            i -= 1
        while i < len(segs) and limit > 0:
            first = seq = segs[i]
            end = self._seg_last(i)
            with open(self._path(_name(seq)), "rb") as f:
                cur = self._cursor
                if cur is not None and cur[0] == first and cur[1] == start:
                    # Where the last call stopped: seek there instead of reading (and
                    # allocating) every line before it again.
                    f.seek(cur[2])
                    seq = start
                while seq <= end and limit > 0:
                    line = f.readline()
                    if not line:
                        break
                    if seq >= start and _line_ok(line, seq):
                        limit -= 1
                        self._cursor = (first, seq + 1, f.tell())
                        yield seq, line[9:-1]
                    seq += 1
            i += 1

    def _begin(self):
        """A buffer without an incarnation: new, wiped, or left by version 1 firmware. Forget
        whatever records are there (version 1: never deliverable now), counting the unacked as
        dropped, then draw the incarnation and make it durable before any record of it is
        written. (A power cut in between leaves no segment and no incarnation: the next start
        draws one; only the dropped count of those version 1 records would be lost.)"""
        self.dropped += self.buffered
        for first in self.segs:
            port.remove(self._path(_name(first)))
        self.segs = []
        self.acked = self.last = self.tail_count = self.bytes = 0
        self.incarnation = port.random_below(2147483647) + 1  # 1..2**31-1
        self._save_meta()

    def ack(self, seq):
        """The gateway stored everything <= seq. Returns True if that is news."""
        if seq > self.last:
            seq = self.last  # never forget records we have not written (a confused gateway)
        if seq <= self.acked:
            return False
        self.acked = seq
        self._delete_acked()
        return True

    def _delete_acked(self):
        while self.segs and self._seg_last(0) <= self.acked:
            # acked must be durable before the records that prove the seq are gone.
            if self._saved_acked != self.acked:
                self._save_meta()
            first = self.segs.pop(0)
            if not self.segs and self._f is not None:
                self._f.close()
                self._f = None
                self.tail_count = 0
            self._remove(first)

    def _remove(self, first):
        path = self._path(_name(first))
        try:
            self.bytes -= port.file_size(path)
        except OSError:
            pass
        port.remove(path)
        if self.bytes < 0 or not self.segs:
            self.bytes = 0

    def sync(self):
        """Persist acked if it moved (called when idle: a lost ack only means a resend)."""
        if self._saved_acked != self.acked:
            self._save_meta()

    def _save_meta(self):
        data = '{"i":%d,"acked":%d,"dropped":%d}' % (self.incarnation, self.acked, self.dropped)
        port.write_atomic(self._path(META), data.encode())
        self._saved_acked = self.acked

    # -- reporting
    @property
    def buffered(self):
        if not self.segs:
            return 0
        return self.last - max(self.acked, self.segs[0] - 1)
