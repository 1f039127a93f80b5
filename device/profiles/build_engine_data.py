# cpython-only: factory tool, not part of the device image (fwtool skips this file).
"""Rebuild cmapss_fd001.txt.gz from NASA's C-MAPSS FD001 training file.

    python -m device.profiles.build_engine_data ../shared/datasets/cmapss-fd001/train_FD001.txt

The bytes are the original file's, gzip-compressed with a 2**GZIP_WBITS window: MicroPython's
DeflateIO allocates the window on the heap and must use one at least as large as the
compressor's (port.GZIP_WBITS; the gzip default of 32 KB does not fit a 64 KB heap).
"""

import sys
import zlib
from pathlib import Path

from device import port

OUT = Path(__file__).with_name("cmapss_fd001.txt.gz")


def build(source, out=OUT):
    data = Path(source).read_bytes()
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + port.GZIP_WBITS)
    Path(out).write_bytes(comp.compress(data) + comp.flush())
    return Path(out)


if __name__ == "__main__":
    print(build(sys.argv[1]))
