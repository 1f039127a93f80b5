"""What a simulation is asked to do, checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cloud.loop.holdout import ALL_UNITS, FLEET_UNITS

PRODUCTS = ("bike", "mirror", "engine")
DEFAULT_MIX = {"bike": 0.7, "mirror": 0.2, "engine": 0.1}
MAX_DEVICES = 20000  # one process, one gateway: past this a run needs more than one machine
MAX_WEEKS = 104
MAX_SPEED = 1_000_000.0
WEEK_MS = 7 * 86400 * 1000
# Each simulated product's sampling period until the cloud says otherwise: a per-minute
# summary while it is in use (a simulated week of 1 s samples would be 600,000 records a bike).
BASE_SETTINGS = {"bike": {"interval_ms": 60000}, "mirror": {"interval_ms": 60000},
                 "engine": {"interval_ms": 60000}}
# The consent the owners grant on their products (a seeded draw per device; in the truth).
CONSENT_MIX = (("personal", 0.6), ("usage", 0.3), ("essential", 0.1))


class OptionError(ValueError):
    """A request the simulator refuses before starting anything."""


def parse_mix(text: str) -> dict[str, float]:
    """"bike=0.7,mirror=0.2,engine=0.1" -> shares that sum to 1; OptionError says what is wrong."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionError(f"mix entry {part.strip()!r} is not PRODUCT=SHARE")
        if name not in PRODUCTS:
            raise OptionError(f"unknown product {name!r} in the mix: choose from "
                              f"{', '.join(PRODUCTS)}")
        if name in mix:
            raise OptionError(f"{name} appears twice in the mix")
        try:
            share = float(value)
        except ValueError:
            raise OptionError(f"share of {name} must be a number, got {value.strip()!r}") from None
        if not 0.0 <= share <= 1.0:
            raise OptionError(f"share of {name} must be between 0 and 1, got {value.strip()}")
        mix[name] = share
    total = sum(mix.values())
    if abs(total - 1.0) > 0.001:
        raise OptionError(f"the mix's shares must add up to 1, they add up to {total:g}")
    return mix


def split(devices: int, mix: dict[str, float]) -> dict[str, int]:
    """Devices per product, by largest remainder: the counts add up to `devices`."""
    exact = {p: devices * share for p, share in mix.items()}
    counts = {p: int(v) for p, v in exact.items()}
    left = devices - sum(counts.values())
    for p in sorted(exact, key=lambda p: exact[p] - counts[p], reverse=True)[:left]:
        counts[p] += 1
    return {p: counts.get(p, 0) for p in PRODUCTS if counts.get(p, 0)}


@dataclass
class Options:
    devices: int
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    speed: float = 10000.0
    weeks: float = 1.0
    seed: int = 1
    out: Path = Path("fleet-sim")
    cloud: str | None = None  # use a running cloud (with gateway) instead of starting them
    gateway: str | None = None  # host:port of that gateway's broker
    home: Path | None = None  # with cloud/gateway: the fleet's home (its device CA's keys)
    token_file: Path | None = None  # with cloud: a factory (or admin) token
    power_cuts: int = 0  # devices whose power is cut once, mid-run
    latency_probes: int = 0  # bikes whose sample-to-queryable latency is measured
    timeout_s: float | None = None  # the whole run's wall-clock bound (default from the span)
    slots: bool = False  # images with firmware slots (updates); default: host images, no slots
    heartbeat_s: int | None = None  # the devices' base heartbeat (default: the agent's)
    # The C-MAPSS units the engines replay. Default: the ones the shipped remaining-life model
    # never trained on, so a run scored against its truth is clean; None replays all 100.
    engine_units: tuple[int, ...] | None = FLEET_UNITS
    interval_ms: int | None = None  # every product's sampling period in use (default above)

    def check(self) -> None:
        if self.devices < 1:
            raise OptionError(f"--devices must be at least 1, got {self.devices}")
        if self.devices > MAX_DEVICES:
            raise OptionError(f"--devices must be at most {MAX_DEVICES:,}, got {self.devices:,}")
        if not self.speed > 0:
            raise OptionError(f"--speed must be more than 0, got {self.speed:g}")
        if self.speed > MAX_SPEED:
            raise OptionError(f"--speed must be at most {MAX_SPEED:,.0f}, got {self.speed:g}")
        if self.speed < 1:
            raise OptionError(f"--speed must be at least 1 (the data clock cannot run slower "
                              f"than the wall clock and end at now), got {self.speed:g}")
        if not 0 < self.weeks <= MAX_WEEKS:
            raise OptionError(f"--weeks must be more than 0 and at most {MAX_WEEKS}, "
                              f"got {self.weeks:g}")
        if self.power_cuts < 0 or self.power_cuts > self.devices:
            raise OptionError(f"--power-cuts must be between 0 and --devices, "
                              f"got {self.power_cuts}")
        if self.interval_ms is not None and not 100 <= self.interval_ms <= 3_600_000:
            raise OptionError(f"the sampling interval must be 100 ms .. 1 h, "
                              f"got {self.interval_ms} ms")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise OptionError(f"--timeout must be more than 0 seconds, got {self.timeout_s:g}")
        if (self.cloud is None) != (self.gateway is None):
            raise OptionError("--cloud and --gateway go together (a running cloud and the "
                              "broker of a gateway that uploads to it)")
        if self.cloud is not None and (self.home is None or self.token_file is None):
            raise OptionError("with --cloud, give --home (the fleet's keys) and --token-file "
                              "(a factory token to enrol the devices)")
        if self.cloud is not None and not self.cloud.startswith(("http://", "https://")):
            raise OptionError(f"--cloud must be an http or https URL, got {self.cloud!r}")
        if self.engine_units is not None and (
                not self.engine_units or not set(self.engine_units) <= set(ALL_UNITS)):
            raise OptionError(f"engine units must be a non-empty choice of {ALL_UNITS[0]}.."
                              f"{ALL_UNITS[-1]}, got {list(self.engine_units)}")
        if self.out.exists() and not self.out.is_dir():
            raise OptionError(f"--out {self.out} exists and is not a directory")

    @property
    def span_ms(self) -> int:
        return int(self.weeks * WEEK_MS)

    @property
    def wall_span_s(self) -> float:
        return self.span_ms / self.speed / 1000.0

    def bound_s(self) -> float:
        """The run's wall-clock bound: the span, then time to drain and count."""
        if self.timeout_s is not None:
            return self.timeout_s
        return self.wall_span_s * 1.5 + 120 + self.devices * 0.05
