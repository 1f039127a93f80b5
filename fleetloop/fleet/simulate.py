"""`fleetloop fleet simulate`: a fleet of simulated products through a real gateway and its
Mosquitto to a real cloud, counted at the end (docs/simulator.md).

The order of a run: check the options (nothing starts on a bad one), start the cloud and a
gateway (or check the running ones answer), provision every device in one batch (keys,
certificates, record keys, enrolment), grant each owner's consent on the product, then step
every device over the simulated span, drain what they buffered, and count: sampled on the
devices, acknowledged by the gateway, stored in the cloud, lost, duplicated. Ctrl-C stops every
process the run started and still prints what it counted.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetloop.device_consent import request as request_consent
from fleetloop.fleet.board import Behaviour, Board, Counters
from fleetloop.fleet.clock import FleetClock
from fleetloop.fleet.latency import LatencyProbe
from fleetloop.fleet.options import BASE_SETTINGS, CONSENT_MIX, OptionError, Options, split
from fleetloop.fleet.scheduler import Scheduler
from fleetloop.fleet.stream import Reactor
from fleetloop.stack import Stack
from gateway.procs import raise_open_files

MARKER = "fleet-sim.json"  # in --out: the summary of the run that used it
BehaviourFactory = Callable[..., Behaviour]


@dataclass
class Summary:
    devices: int
    products: dict[str, int]
    weeks: float
    speed: float
    seed: int
    sampled: int = 0  # telemetry records the devices wrote to their buffers
    consent_records: int = 0  # consent records in the same streams
    sent: int = 0  # telemetry PUBLISHes, re-sends included
    acknowledged: int = 0  # records the gateway acknowledged (stored durably there)
    stored: int = 0  # records the cloud holds from these devices
    lost: int = 0  # written on a device and not in the cloud: must be 0
    duplicates: int = 0  # records the cloud holds beyond what the devices wrote
    power_cuts: int = 0
    latency: dict[str, Any] = field(default_factory=dict)  # sample to queryable (probes)
    resets: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    provision_s: float = 0.0
    interrupted: bool = False
    complete: bool = False  # everything written reached the cloud within the run's bound
    data_start_ms: int = 0
    data_end_ms: int = 0
    out: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """Who is in the fleet: (device id, product, consent tier), in a seeded order."""

    devices: list[tuple[str, str, str]]

    @classmethod
    def make(cls, options: Options) -> Plan:
        out = []
        for product, count in split(options.devices, options.mix).items():
            for n in range(1, count + 1):
                device_id = f"{product}-{n:05d}"
                out.append((device_id, product, _consent_of(options.seed, device_id)))
        return cls(out)


def _consent_of(seed: int, device_id: str) -> str:
    draw = random.Random(f"{seed}:consent:{device_id}").random()
    for tier, share in CONSENT_MIX:
        if draw < share:
            return tier
        draw -= share
    return CONSENT_MIX[-1][0]


def prepare_out(out: Path) -> None:
    """--out must be new, empty, or an earlier run's (which is replaced)."""
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise OptionError(f"--out {out} is not empty and holds no earlier simulation: "
                          "choose a new directory")
    if (out / MARKER).is_file():
        for name in ("home", "truth.json", MARKER):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def start_stack(home: Path) -> Stack:
    """A cloud and one gateway with its Mosquitto, started the way a user does (fleetloop
    cloud serve, gateway register, gateway run); the devices' keys come with provisioning."""
    stack = Stack(home=home)
    try:
        stack.keygen([])
        stack.start_cloud()
        stack.register_gateway()
        stack.start_gateway()
    except BaseException:
        stack.stop()
        raise
    return stack


def check_cloud(url: str) -> None:
    try:
        resp = httpx.get(url.rstrip("/") + "/healthz", timeout=5)
    except httpx.HTTPError as e:
        raise OptionError(f"the cloud at {url} is unreachable: {e}") from None
    if resp.status_code != 200:
        raise OptionError(f"the cloud at {url} answered {resp.status_code} to /healthz")


class Simulation:
    def __init__(self, options: Options, behaviours: BehaviourFactory | None = None,
                 progress: Callable[[Simulation], None] | None = None) -> None:
        self.options = options
        self.behaviours = behaviours
        self.progress = progress
        self.plan = Plan.make(options)
        self.fleet = FleetClock(span_ms=options.span_ms, speed=options.speed)
        self.reactor = Reactor()
        self.counters = Counters()
        self.boards: list[Board] = []
        self.stack: Stack | None = None
        self.truth: Any = None
        self.scheduler: Scheduler | None = None
        self.summary = Summary(devices=options.devices,
                               products=split(options.devices, options.mix),
                               weeks=options.weeks, speed=options.speed, seed=options.seed,
                               out=str(options.out))
        self.phase = "starting"
        self._cuts: list[tuple[int, Board]] = []
        self._started = 0.0
        self.stop_requested = False  # a scenario ends the run early (it has what it measured)

    # -- the run -----------------------------------------------------------------------------
    def run(self, scenario: Callable[[Simulation], None] | None = None,
            after: Callable[[Simulation], None] | None = None) -> Summary:
        """Simulate and count. scenario(sim) runs about twice a second while the devices run
        (an operator's actions: a config push); after(sim) once everything is counted, while
        the cloud and the gateway still run (a test reads the cloud there)."""
        opts = self.options
        opts.check()
        if opts.cloud is not None:
            check_cloud(opts.cloud)
        prepare_out(opts.out)
        raise_open_files(2 * opts.devices + 1024)
        self._started = time.monotonic()
        try:
            self._start_stack()
            self._provision()
            self._simulate(scenario)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            try:
                self._finish()
                if after is not None and not self.summary.interrupted:
                    after(self)
            finally:
                if self.stack is not None:
                    self.stack.stop()
                self.reactor.close()
        return self.summary

    @property
    def home(self) -> Path:
        return self.options.home if self.options.home is not None else self.options.out / "home"

    def _start_stack(self) -> None:
        self.phase = "starting the cloud and the gateway"
        if self.options.cloud is None:
            self.stack = start_stack(self.home)

    def _provision(self) -> None:
        from fwtool.batch import Row, provision_many

        self.phase = "provisioning"
        t0 = time.monotonic()
        host, port = self._broker()
        rows = [Row(d, product) for d, product, _ in self.plan.devices]
        result = provision_many(self.home, rows, host, port, firmware=self.options.slots,
                                cloud=self._cloud_url(), token=self._token(),
                                progress=self._provision_progress)
        if result.failures:
            first = "; ".join(f"{d}: {why}" for d, why in result.failures[:3])
            raise RuntimeError(f"{len(result.failures)} device(s) could not be provisioned: {first}")
        for device_id, _, tier in self.plan.devices:
            if tier != "essential":  # a new device is at essential until its owner says more
                request_consent(self.home, device_id, tier)
        self.summary.provision_s = round(time.monotonic() - t0, 2)

    def _provision_progress(self, done: int, total: int) -> None:
        self.phase = f"provisioning {done}/{total}"
        if self.progress is not None:
            self.progress(self)

    def _broker(self) -> tuple[str, int]:
        if self.stack is not None:
            return "localhost", self.stack.mqtt_port
        assert self.options.gateway is not None
        host, _, port = self.options.gateway.rpartition(":")
        return host, int(port)

    def _cloud_url(self) -> str:
        return self.stack.cloud_url if self.stack is not None else str(self.options.cloud)

    def _token(self) -> str:
        if self.stack is not None:
            return self.stack.admin_token
        assert self.options.token_file is not None
        return self.options.token_file.read_text().strip()

    def _simulate(self, scenario: Callable[[Simulation], None] | None) -> None:
        from fleetloop.fleet import truth as truth_module

        opts = self.options
        build = self.behaviours or _default_behaviours()
        self.fleet.start()
        self.summary.data_start_ms = self.fleet.start_ms
        self.summary.data_end_ms = self.fleet.end_ms
        self.truth = truth_module.Truth(opts.seed, self.fleet.start_ms, self.fleet.end_ms,
                                        opts.speed)
        for device_id, product, tier in self.plan.devices:
            # only engines take the restriction (a custom factory need not know of it)
            units = {"units": opts.engine_units} if product == "engine" else {}
            behaviour = build(device_id, product, opts.seed, self.fleet.start_ms,
                              self.fleet.end_ms, self.truth, **units)
            self.truth.event(device_id, self.fleet.start_ms, "consent", tier=tier)
            base = dict(BASE_SETTINGS[product])
            if opts.heartbeat_s is not None:
                base["heartbeat_s"] = opts.heartbeat_s
            if opts.interval_ms is not None:
                base["interval_ms"] = opts.interval_ms
            self.boards.append(Board(self.home / "devices" / device_id, behaviour, self.fleet,
                                     self.reactor, self.counters, base))
        self._plan_power_cuts()
        self.scheduler = Scheduler(self.reactor, self.boards)
        deadline = self._started + opts.bound_s()

        def tick() -> None:
            self._power_cuts()
            if scenario is not None:
                scenario(self)
            if self.progress is not None:
                self.progress(self)

        probe = self._latency_probe()
        self.phase = "simulating"
        try:
            self.scheduler.run(lambda: self.fleet.done or self.stop_requested
                               or time.monotonic() > deadline, tick)
        finally:
            if probe is not None:
                probe.stop()
                self.summary.latency = probe.percentiles()
        # The loop asks done() at every turn; counting over the fleet (or asking the cloud) is
        # worth doing a few times a second at most.
        self.phase = "draining"
        drained = Throttled(self._drained, 0.2)
        self.scheduler.run(lambda: drained() or time.monotonic() > deadline, tick)
        self.phase = "waiting for the cloud"
        stored = Throttled(self._stored_all, 1.0)
        self.scheduler.run(lambda: stored() or time.monotonic() > deadline, tick, tick_s=1.0)

    def _latency_probe(self) -> LatencyProbe | None:
        """Probe devices: the first few bikes whose owners share usage data."""
        wanted = self.options.latency_probes
        if not wanted:
            return None
        tiers = {d: t for d, _, t in self.plan.devices}
        chosen = [b for b in self.boards
                  if b.behaviour.product == "bike" and tiers[b.device_id] != "essential"][:wanted]
        probe = LatencyProbe(self._cloud_url(), self._token(), chosen)
        probe.start()
        return probe

    def _plan_power_cuts(self) -> None:
        rng = random.Random(f"{self.options.seed}:power")
        chosen = rng.sample(self.boards, self.options.power_cuts)
        span = self.fleet.end_ms - self.fleet.start_ms
        self._cuts = sorted(((self.fleet.start_ms + int(span * rng.uniform(0.2, 0.7)), b)
                             for b in chosen), key=lambda c: c[0])

    def _power_cuts(self) -> None:
        now = self.fleet.now()
        while self._cuts and self._cuts[0][0] <= now:
            at, board = self._cuts.pop(0)
            off_s = 2.0 + random.Random(f"{self.options.seed}:off:{board.device_id}").random() * 3
            board.power_cut(off_s)
            self.truth.event(board.device_id, at, "power_cut", off_s=round(off_s, 2),
                             data_off_ms=int(off_s * 1000 * self.options.speed))
            self.summary.power_cuts += 1
            assert self.scheduler is not None
            self.scheduler.poke(board)

    # -- counting ----------------------------------------------------------------------------
    def totals(self) -> tuple[int, int]:
        """(records written, acknowledged) over the fleet."""
        written = acked = 0
        for board in self.boards:
            w, a = board.totals()
            written += w
            acked += a
        return written, acked

    def _drained(self) -> bool:
        written, acked = self.totals()
        return acked >= written

    def _stored_all(self) -> bool:
        stored = self._cloud_counts()
        written = {b.device_id: b.totals()[0] for b in self.boards}
        return all(stored.get(d, (0, 0))[1] >= n for d, n in written.items())

    def _cloud_counts(self) -> dict[str, tuple[int, int]]:
        """device -> (incarnation, records) as the cloud's registry reports them."""
        try:
            resp = httpx.get(self._cloud_url().rstrip("/") + "/api/v1/devices",
                             headers={"Authorization": f"Bearer {self._token()}"},
                             # Ctrl-C asks to stop now: a busy cloud gets a short while only.
                             timeout=5 if self.summary.interrupted else 30)
            resp.raise_for_status()
        except httpx.HTTPError:
            return {}
        return {d["id"]: (int(d["incarnation"]), int(d["records"])) for d in resp.json()}

    def _finish(self) -> None:
        self.phase = "counting"
        s = self.summary
        for board in self.boards:
            try:
                board.shut_down()
            except Exception:  # noqa: BLE001 - counting matters more than a clean goodbye
                pass
        stored = self._cloud_counts() if self.boards else {}
        for board in self.boards:
            written, acked = board.totals()
            consent = board.consent_records()
            s.sampled += written - consent
            s.consent_records += consent
            s.acknowledged += acked
            s.sent += board.sent
            held = stored.get(board.device_id, (0, 0))[1]
            s.stored += held
            s.lost += max(0, written - held)
            s.duplicates += max(0, held - written)
        s.complete = bool(stored) and s.lost == 0 and not s.interrupted
        s.resets = dict(self.counters.resets)
        s.events = dict(sorted(self.counters.events.items()))
        s.wall_s = round(time.monotonic() - self._started, 2)
        out = self.options.out
        if self.truth is not None:
            self.truth.write(out / "truth.json")
        (out / MARKER).write_text(json.dumps(s.as_dict(), indent=2) + "\n")


class Throttled:
    """check(), asked at most once per `period_s`; False in between."""

    def __init__(self, check: Callable[[], bool], period_s: float) -> None:
        self.check = check
        self.period_s = period_s
        self.next_at = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self.next_at:
            return False
        self.next_at = now + self.period_s
        return self.check()


def _default_behaviours() -> BehaviourFactory:
    from fleetloop.fleet.behaviour import build

    return build
