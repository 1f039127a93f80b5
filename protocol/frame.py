"""Frame: several telemetry records in one MQTT message, so a device with a backlog sends
it in fewer, larger messages. On fleet/<id>/telemetry, like a single record.

Wire: each record (protocol.record: its exact bytes and its own tag) followed by one line feed:

    <record 1>\n<record 2>\n ... <record n>\n

A telemetry payload that ends with a line feed is a frame; any other is one record. A record
holds no raw line feed (canonical JSON escapes control characters), so the split is exact
and the gateway forwards each record's bytes untouched: the cloud checks each record's tag
exactly as if it had come alone. Bounds (protocol.bounds): 1..MAX_FRAME_RECORDS records and
at most MAX_FRAME_BYTES bytes; a frame beyond them is refused whole. Within them each record is
decoded and deduplicated on its own: one bad record is refused alone, the others are stored and
acked (an empty line is such a bad record).

MicroPython/CPython common subset.
"""

from protocol.bounds import MAX_FRAME_BYTES, MAX_FRAME_RECORDS

SEP = b"\n"
_LF = 10


def is_frame(payload):
    """True when a telemetry payload is a frame (ends with a line feed)."""
    return len(payload) > 0 and payload[len(payload) - 1] == _LF


def encode(records):
    """The frame of `records` (a sequence of wire records, bytes); ValueError beyond the
    bounds or for a record holding a line feed (it would split in two)."""
    if not 0 < len(records) <= MAX_FRAME_RECORDS:
        raise ValueError("a frame holds 1.." + str(MAX_FRAME_RECORDS) + " records")
    size = 0
    for rec in records:
        if SEP in rec or not rec:
            raise ValueError("a record in a frame must not be empty or hold a line feed")
        size += len(rec) + 1
    if size > MAX_FRAME_BYTES:
        raise ValueError("frame too large")
    return SEP.join(records) + SEP


def split(payload):
    """The records of a frame (bytes each, in order; an entry may be empty or invalid: each is
    decoded on its own). ValueError when the payload is no frame or is beyond its bounds."""
    if not is_frame(payload):
        raise ValueError("not a frame")
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError("frame too large (" + str(len(payload)) + " > "
                         + str(MAX_FRAME_BYTES) + " bytes)")
    parts = bytes(payload).split(SEP)
    parts.pop()  # after the last line feed
    if len(parts) > MAX_FRAME_RECORDS:
        raise ValueError("frame has too many records (" + str(len(parts)) + " > "
                         + str(MAX_FRAME_RECORDS) + ")")
    return parts
