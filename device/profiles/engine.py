"""Turbofan engine: replays a real NASA C-MAPSS FD001 run-to-failure trajectory, one flight
cycle per sample.

A sample reports engine_unit, cycle and the 14 informative sensors (SENSORS). The device's
engine is the unit its id picks (1-100); it flies from its first cycle to failure, then the
engine is overhauled and the trajectory starts again at cycle 1. After a reboot it continues
at the flight after the last one it reported (one per seq) instead of starting over.

The data is cmapss_fd001.bin next to this module (see build_engine_data.py): fixed-size rows
of integers, read in place with seek + readinto into one 32-byte buffer, so the heap holds no
decompressor and no text. A provisioned image carries only its own unit's rows (~7 KB); the
repository's file has all 100 units, for hosts that run the agent from source.
"""

import binascii
import struct
import sys

from device import port

DATA = "cmapss_fd001.bin"
MAGIC = b"CMT1"
UNITS = 100
HEAD = 12  # magic, columns, row size, rows; then 8 bytes (base, scale) per column
# The 14 sensors that change over an FD001 run (the other 7 and the 3 operating settings are
# constant or noise at FD001's single operating condition, and the usual prognostics
# literature drops them too): (column in NASA's text file, metric name = lower-cased sensor).
SENSORS = (
    (6, "t24"), (7, "t30"), (8, "t50"), (11, "p30"), (12, "nf"), (13, "nc"), (15, "ps30"),
    (16, "phi"), (17, "nrf"), (18, "nrc"), (19, "bpr"), (21, "htbleed"), (24, "w31"),
    (25, "w32"),
)


def data_path():
    """The data next to this module, wherever the image's modules are (ROMFS or lib/)."""
    here = globals().get("__file__")
    if here and "/" in here:
        return here.rsplit("/", 1)[0] + "/" + DATA
    for root in sys.path:
        path = (root or ".") + "/device/profiles/" + DATA
        if port.exists(path):
            return path
    raise OSError(2)


class Profile:
    name = "engine"

    def __init__(self, device_id, position=0):
        f = open(data_path(), "rb")
        self.f = f
        head = f.read(HEAD)
        magic, cols, self.size, self.rows = struct.unpack("<4sHHI", head)
        if magic != MAGIC or cols != len(SENSORS) or self.size != 4 + 2 * cols:
            f.close()
            raise ValueError("not an engine trajectory file")
        scales = struct.unpack("<" + "iI" * cols, f.read(8 * cols))
        # (MicroPython slices support no step)
        self.base = tuple(scales[2 * i] for i in range(cols))
        self.scale = tuple(scales[2 * i + 1] for i in range(cols))
        self.fmt = "<%dH" % (2 + cols)
        self.buf = bytearray(self.size)
        # The unit's rows: [first, first + count). A provisioned file holds one unit only, and
        # whatever unit that is, it is this device's (the factory chose it by the same rule).
        want = binascii.crc32(device_id.encode()) % UNITS + 1
        first = self._find(want)
        if first == self.rows or self._read(first)[0] != want:
            first = 0
        self.unit = self._read(first)[0]
        self.first = first
        self.count = self._find(self.unit + 1) - first
        self.at = position % self.count  # flights already reported, overhauls included

    def _read(self, row):
        f = self.f
        f.seek(HEAD + 8 * len(self.base) + row * self.size)
        if f.readinto(self.buf) != self.size:
            raise OSError(5)
        return struct.unpack(self.fmt, self.buf)

    def _find(self, unit):
        """First row whose unit is >= `unit` (rows are sorted by unit), or self.rows."""
        lo, hi = 0, self.rows
        while lo < hi:
            mid = (lo + hi) // 2
            if self._read(mid)[0] < unit:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def sample(self):
        row = self._read(self.first + self.at)
        self.at = (self.at + 1) % self.count
        out = {"engine_unit": row[0], "cycle": row[1]}
        base = self.base
        scale = self.scale
        for i in range(len(SENSORS)):
            out[SENSORS[i][1]] = (base[i] + row[2 + i]) / scale[i]
        return out

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None  # type: ignore[assignment]  # closed for good
