# cpython-only: factory tool, not part of the device image (fwtool skips this file).
"""Rebuild cmapss_fd001.bin, the engine profile's data, from NASA's C-MAPSS FD001 training file.

    python -m device.profiles.build_engine_data ../shared/datasets/cmapss-fd001/train_FD001.txt

The file is the real trajectories, packed so a 56 KB device replays them with neither a
decompressor nor a text parser: fixed-size rows the profile seeks to and reads in place.
Every value keeps its exact decimal digits (stored as an integer offset from a per-column base,
divided back by a power of ten on the device).

    header  4s magic b"CMT1", H columns, H row size, I rows, then per column: i base, I scale
    row     H unit, H cycle, then per column: H (round(value * scale) - base)     little-endian

Rows are sorted by unit, then cycle. Provisioning (fwtool.trajectory) cuts the one unit a
device replays out of this file, so an image carries its own engine only (~7 KB, not 660 KB).
"""

import struct
import sys
from pathlib import Path

from device.profiles.engine import COLUMNS, MAGIC

OUT = Path(__file__).with_name("cmapss_fd001.bin")


def pack(text):
    """The bytes of the packed file for the whitespace-separated FD001 text."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows or any(len(cols) != 26 for cols in rows):
        raise ValueError("expected 26 columns per row (C-MAPSS FD001 training file)")
    rows.sort(key=lambda cols: (int(cols[0]), int(cols[1])))
    header = []
    columns = []
    for col in COLUMNS:
        texts = [cols[col] for cols in rows]
        scale = 10 ** max(len(t.partition(".")[2]) for t in texts)
        ints = [round(float(t) * scale) for t in texts]
        base = min(ints)
        if max(ints) - base > 0xFFFF:
            raise ValueError(f"column {col} spans more than 16 bits")
        header += [base, scale]
        columns.append([v - base for v in ints])
    fmt = "<HH%dH" % len(COLUMNS)
    body = b"".join(
        struct.pack(fmt, int(cols[0]), int(cols[1]), *(c[i] for c in columns))
        for i, cols in enumerate(rows)
    )
    head = struct.pack("<4sHHI", MAGIC, len(COLUMNS), struct.calcsize(fmt), len(rows))
    return head + struct.pack("<" + "iI" * len(COLUMNS), *header) + body


def build(source, out=OUT):
    Path(out).write_bytes(pack(Path(source).read_text()))
    return Path(out)


if __name__ == "__main__":
    print(build(sys.argv[1]))
