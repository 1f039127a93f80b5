"""Turbofan engine: replays NASA C-MAPSS FD001 run-to-failure trajectories, one row per sample.

One row = one flight cycle of one engine: unit, cycle, 3 operational settings, 21 sensors; a
sample reports engine_unit, cycle and the 14 informative sensors (SENSORS).
A device starts at the first cycle of the unit its id picks (1-100) and plays it to failure;
then the next unit (an engine swap), wrapping at the end of the file. After a reboot it skips
the rows it already reported (one per seq), so cycles continue instead of starting over. The data ships gzipped
next to this module (cmapss_fd001.txt.gz, see build_engine_data.py) and is read line by line,
so the heap only holds the decompressor's small window and one row.
"""

import binascii
import sys

from device import port

DATA = "cmapss_fd001.txt.gz"
UNITS = 100
# The 14 sensors that change over an FD001 run (the other 7 and the 3 operating settings are
# constant or noise at FD001's single operating condition, and the usual prognostics
# literature drops them too): (column index in the row, metric name = lower-cased sensor name).
SENSORS = (
    (6, "t24"), (7, "t30"), (8, "t50"), (11, "p30"), (12, "nf"), (13, "nc"), (15, "ps30"),
    (16, "phi"), (17, "nrf"), (18, "nrc"), (19, "bpr"), (21, "htbleed"), (24, "w31"),
    (25, "w32"),
)


def data_path():
    """The dataset next to this module, wherever the image's lib/ is."""
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
        self.path = data_path()
        self.unit = binascii.crc32(device_id.encode()) % UNITS + 1
        self.f = None
        # Position now, at boot: the decompressor's ~2.4 KB of state and window then come from
        # a heap that is not yet fragmented by the running agent.
        self.row = self._seek_unit()
        for _ in range(position):
            self.row = self._next_row()

    def _next_row(self):
        for _ in range(2):  # at EOF: reopen once and start over at unit 1
            if self.f is None:
                self.f = port.open_gzip(self.path)
            line = self.f.readline()
            while line:
                cols = line.split()
                if len(cols) == 26:
                    return cols
                line = self.f.readline()
            self.f.close()
            self.f = None
        raise OSError(5)

    def _seek_unit(self):
        while True:
            cols = self._next_row()
            if int(cols[0]) >= self.unit:
                return cols

    def sample(self):
        cols = self.row or self._next_row()
        self.row = None
        out = {"engine_unit": int(cols[0]), "cycle": int(cols[1])}
        for col, name in SENSORS:
            out[name] = float(cols[col])
        return out

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None
