"""Simulated behaviours: the person (or aircraft) behind each simulated product, which the fleet
simulator plugs in as the device's sensor. Every behaviour is drawn per device from the fleet's
seed, records its traits and what really happened in a Truth (truth.py), and is pure Python:
no I/O but reading the engine data.

The simulator calls the device's sampling like this (drive() below does the same for tests):

    metrics = behaviour.sample(t, settings)      # at each sampling tick of the data clock
    if metrics is None:                          # idle: nobody riding, no flight landed
        t += behaviour.rest_ms(t, settings)      # sleep until the next activity
    else:
        t += settings["interval_ms"]

`settings` is the device's applied settings (defaults plus the last signed config), so it holds
every name of protocol.config.SETTINGS; behaviours read the ones they react to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from . import engines, mirrors, riders
from .habit import Metrics
from .truth import Truth

PRODUCTS = ("bike", "mirror", "engine")

__all__ = ["PRODUCTS", "Behaviour", "Metrics", "build", "drive"]


class Behaviour(Protocol):
    product: str

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> Metrics | None:
        """The product's metrics for the interval ending at t_ms (ms since the epoch, never
        decreasing between calls), or None when the product is idle."""
        ...

    def rest_ms(self, t_ms: int, settings: Mapping[str, int]) -> int:
        """After sample() returned None at t_ms: data ms (>= 1) until the next activity
        begins; past the span's end when nothing more happens in it."""
        ...


def build(device_id: str, product: str, seed: int, start_ms: int, end_ms: int, truth: Truth,
          *, units: Sequence[int] | None = None) -> Behaviour:
    """The behaviour of one simulated device, its traits recorded in `truth`. The same
    (seed, device_id) gives the same traits and, under the same settings, the same events.
    `units` restricts the C-MAPSS units an engine may replay (default: all 100)."""
    if end_ms < start_ms:
        raise ValueError("the span ends before it starts")
    behaviour: Behaviour
    if product == "bike":
        rt = riders.draw_traits(seed, device_id, start_ms, end_ms)
        truth.device(device_id, product, rt.as_dict())
        behaviour = riders.Rider(device_id, seed, start_ms, end_ms, truth, rt)
    elif product == "mirror":
        mt = mirrors.draw_traits(seed, device_id, start_ms, end_ms)
        truth.device(device_id, product, mt.as_dict())
        behaviour = mirrors.MirrorUser(device_id, seed, start_ms, end_ms, truth, mt)
    elif product == "engine":
        data = engines.load_trajectories()
        et = engines.draw_traits(seed, device_id, start_ms, end_ms, data, units)
        truth.device(device_id, product, et.as_dict())
        behaviour = engines.Engine(device_id, seed, start_ms, end_ms, truth, et, data)
    else:
        raise ValueError(f"unknown product {product!r} (expected one of {', '.join(PRODUCTS)})")
    return behaviour


SettingsAt = Mapping[str, int] | Callable[[int], Mapping[str, int]]


def drive(behaviour: Behaviour, start_ms: int, end_ms: int,
          settings: SettingsAt) -> Iterator[tuple[int, Metrics]]:
    """Play the device: sample at each interval, sleep rest_ms when idle, from start_ms to
    end_ms; yields (t, metrics) for every sample taken. `settings` is the applied settings, or
    a function of the data time giving them (a config that arrives part-way)."""
    settings_at = settings if callable(settings) else (lambda _t: settings)
    t = start_ms
    while t <= end_ms:
        now = settings_at(t)
        metrics = behaviour.sample(t, now)
        if metrics is None:
            t += behaviour.rest_ms(t, now)
        else:
            yield t, metrics
            t += now["interval_ms"]
