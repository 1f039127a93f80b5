"""The truth of a simulated fleet: every device's drawn traits and everything its user (or
aircraft) really did, written to truth.json for tests and benchmarks to score the cloud's
findings against. It never goes to the cloud. The format is documented in docs/simulator.md
("Truth file").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = 1
# The members every event has; its details are the rest.
EVENT_KEYS = ("d", "t", "kind")


class TruthError(ValueError):
    """A truth file that cannot be read: says which file and what is wrong."""


@dataclass(frozen=True)
class DeviceTruth:
    product: str
    traits: dict[str, Any]


class Truth:
    """Collects traits and events while a simulation runs; `write` saves them, `load` reads
    them back. Cheap to call from the hot path: an event is one dict appended to a list."""

    def __init__(self, seed: int, start_ms: int, end_ms: int, speed: float) -> None:
        if end_ms < start_ms:
            raise ValueError("the span ends before it starts")
        self.seed = seed
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.speed = speed
        self.devices: dict[str, DeviceTruth] = {}
        self._events: list[dict[str, Any]] = []
        self._sorted = True

    def device(self, device_id: str, product: str, traits: dict[str, Any]) -> None:
        self.devices[device_id] = DeviceTruth(product, dict(traits))

    def event(self, device_id: str, t_ms: int, kind: str, **details: Any) -> None:
        record = {"d": device_id, "t": int(t_ms), "kind": kind}
        record.update(details)
        self._events.append(record)
        self._sorted = False

    def events(self, kind: str | None = None, device: str | None = None) -> list[dict[str, Any]]:
        """Events in time order (ties keep the order they were recorded in), optionally only
        of one kind and/or one device."""
        if not self._sorted:
            self._events.sort(key=_time)  # stable: ties keep their recording order
            self._sorted = True
        return [e for e in self._events
                if (kind is None or e["kind"] == kind) and (device is None or e["d"] == device)]

    def traits(self, device_id: str) -> dict[str, Any]:
        return self.devices[device_id].traits

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "seed": self.seed,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "speed": self.speed,
            "devices": {name: {"product": d.product, "traits": d.traits}
                        for name, d in sorted(self.devices.items())},
            "events": self.events(),
        }

    def write(self, path: Path) -> None:
        """Write truth.json atomically: a reader sees the old file or the new, never half."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, separators=(",", ":"))
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Truth:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TruthError(f"cannot read truth file {path}: {e}") from e
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, source: str = "truth") -> Truth:
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise TruthError(f"{source}: not a version {VERSION} truth file")
        try:
            truth = cls(int(data["seed"]), int(data["start_ms"]), int(data["end_ms"]),
                        float(data["speed"]))
            for name, dev in data["devices"].items():
                truth.device(name, str(dev["product"]), dict(dev["traits"]))
            for event in data["events"]:
                details = {k: v for k, v in event.items() if k not in EVENT_KEYS}
                truth.event(str(event["d"]), int(event["t"]), str(event["kind"]), **details)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TruthError(f"{source}: malformed truth file ({e!r})") from e
        return truth


def _time(event: dict[str, Any]) -> int:
    return int(event["t"])
