"""Product profiles: where sensor readings come from. On the host they simulate; on a board a
profile is where the real sensor driver plugs in. Each profile module has
`Profile(device_id, position)` with `name` and `sample() -> {metric: int|float|bool}`, is cheap
to call once per interval, and is deterministic per device id (same id, same series).
`position` is how many samples the device has taken before (its last seq), so a series that
has a history (an engine's flight cycles) resumes after a reboot instead of starting over."""

import binascii

NAMES = ("bike", "mirror", "engine")


def load(name, device_id, position=0):
    if name not in NAMES:
        raise ValueError("unknown profile " + str(name))
    module = __import__("device.profiles." + name, None, None, ("Profile",))
    return module.Profile(device_id, position)


class Rand:
    """xorshift32 seeded from the device id: identical on MicroPython and CPython (the
    interpreters' `random` modules differ), and allocation-free."""

    def __init__(self, seed_text):
        self.state = binascii.crc32(seed_text.encode()) or 0x9E3779B9

    def next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n):
        return self.next() % n

    def uniform(self, low, high):
        return low + (high - low) * (self.next() / 4294967296.0)
