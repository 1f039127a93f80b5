"""The engine profile's data, cut to one engine at provisioning.

The device package ships NASA's C-MAPSS FD001 trajectories packed as fixed-size rows
(device/profiles/cmapss_fd001.bin, written by device/profiles/build_engine_data.py):

    header  4s magic b"CMT1", H columns, H row size, I rows, then per column: i base, I scale
    row     H unit, H cycle, then per column: H value offset      little-endian, sorted by unit

An engine image carries only the rows of its own unit (~7 KB instead of 660 KB): the unit a
device id picks is crc32(id) % 100 + 1, the rule the profile applies to the whole file.
"""

from __future__ import annotations

import struct
import zlib

from .errors import FwToolError

MAGIC = b"CMT1"
UNITS = 100
_HEAD = struct.Struct("<4sHHI")


def unit_of(device_id: str) -> int:
    return zlib.crc32(device_id.encode()) % UNITS + 1


def extract(data: bytes, unit: int) -> bytes:
    """The same file with the rows of `unit` only; FwToolError if it has none."""
    if len(data) < _HEAD.size:
        raise FwToolError("engine data too short")
    magic, columns, size, rows = _HEAD.unpack_from(data)
    start = _HEAD.size + 8 * columns
    if magic != MAGIC or size < 4 or len(data) != start + rows * size:
        raise FwToolError("engine data is not a packed C-MAPSS trajectory file")
    kept = [data[at:at + size] for at in range(start, len(data), size)
            if struct.unpack_from("<H", data, at)[0] == unit]
    if not kept:
        raise FwToolError(f"engine data has no unit {unit}")
    return _HEAD.pack(magic, columns, size, len(kept)) + data[_HEAD.size:start] + b"".join(kept)
