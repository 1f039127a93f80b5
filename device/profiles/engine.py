"""Turbofan engine: replays a real NASA C-MAPSS FD001 run-to-failure trajectory, one flight
cycle per sample.

A sample reports engine_unit, cycle and the 14 informative sensors (SENSORS). The device's
engine is the unit its id picks (1-100); it flies from its first cycle to failure, then the
engine is overhauled and the trajectory starts again at cycle 1. After a reboot it continues
at the flight after the last one it reported (one per seq) instead of starting over.

The data is a cmapss_fd001.bin file (see build_engine_data.py): fixed-size rows of integers,
read in place with seek + readinto into one 32-byte buffer, so the heap holds no decompressor
and no text. A provisioned image carries only its own unit's rows (~7 KB) in assets/, outside
the firmware (an update carries code, never a device's data); the repository's file next to
this module has all 100 units, for hosts that run the agent from source.
"""

import binascii
import struct
import sys

from device import port

DATA = "cmapss_fd001.bin"
ASSET = "assets/" + DATA  # in a provisioned image: this device's own engine
MAGIC = b"CMT1"
UNITS = 100
HEAD = 12  # magic, columns, row size, rows; then 8 bytes (base, scale) per column
ROW = 32  # unit, cycle, 14 value offsets: 16 little-endian uint16
FORMAT = "<16H"
# The 14 sensors that change over an FD001 run (the other 7 and the 3 operating settings are
# constant or noise at FD001's single operating condition, and the usual prognostics
# literature drops them too), as metric names (lower-cased sensor names), and their columns in
# NASA's text file (for build_engine_data.py). Flat tuples of constants: cheap on the heap.
SENSORS = ("t24", "t30", "t50", "p30", "nf", "nc", "ps30", "phi", "nrf", "nrc", "bpr", "htbleed",
           "w31", "w32")
COLUMNS = (6, 7, 8, 11, 12, 13, 15, 16, 17, 18, 19, 21, 24, 25)


def data_path():
    """The image's assets/ file, else the data next to this module (a host running from source).

    The agent runs with its image as the working directory (a board's flash root; the host's
    device runner starts either interpreter inside the image), so a relative path reaches the
    image without being told where it is; the modules themselves sit in a slot (ROMFS) or lib/.
    """
    if port.exists(ASSET):
        return ASSET
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
        magic, cols, size, rows = struct.unpack("<4sHHI", f.read(HEAD))
        if magic != MAGIC or cols != len(SENSORS) or size != ROW:
            f.close()
            raise ValueError("not an engine trajectory file")
        self.cols = struct.unpack("<" + "iI" * cols, f.read(8 * cols))  # base, scale, ...
        self.buf = bytearray(ROW)
        # The unit's rows: [first, first + count). A provisioned file holds one unit only, and
        # whatever unit that is, it is this device's (the factory chose it by the same rule).
        want = binascii.crc32(device_id.encode()) % UNITS + 1
        first = self._find(want, rows)
        if first == rows or self._read(first)[0] != want:
            first = 0
        self.first = first
        self.count = self._find(self._read(first)[0] + 1, rows) - first
        self.at = position % self.count  # flights already reported, overhauls included

    def _read(self, row):
        """The row's (unit, cycle, 14 value offsets) as a tuple."""
        f = self.f
        f.seek(HEAD + 8 * len(SENSORS) + row * ROW)
        if f.readinto(self.buf) != ROW:
            raise OSError(5)
        return struct.unpack(FORMAT, self.buf)

    def _find(self, unit, rows):
        """First row whose unit is >= `unit` (rows are sorted by unit), or `rows`."""
        lo, hi = 0, rows
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
        cols = self.cols
        for i in range(len(SENSORS)):
            out[SENSORS[i]] = (cols[2 * i] + row[2 + i]) / cols[2 * i + 1]
        return out

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None  # type: ignore[assignment]  # closed for good
