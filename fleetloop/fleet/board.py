"""A simulated board: one product's real device code, stepped from the simulator's loop.

What device/main.py does on a board, without its module unloading (one process hosts every
device, and the heap it protects is a board's): at each start verify a staged config, apply
consent, build the agent (device.app.build) around the product's simulated user (the profile)
and the data clock; then step it. When the agent stops for a staged config or a consent
request, the board closes it and starts again, as main.py's loop does. A crash or a
MemoryError is a reset a board would do: the cause goes to data/reset.json (the device reports
it in its next state), the board waits a back-off and starts again (fleetloop.device_runner's
rules). power_cut() drops the device without a goodbye: sockets abort, the agent's memory is
gone, what it wrote is on "flash" (the files; the process keeps the page cache).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from device import agent as agent_module
from device import app, config, consent, first_stage, install, link, port, settings
from fleetloop.device_runner import backoff_s, read_reset, write_reset
from fleetloop.fleet.clock import DeviceClock, FleetClock
from fleetloop.fleet.stream import Reactor, client_context, opener

IDLE_STEP_S = 1.0  # an idle device is stepped at least this often (buffer sync, timers)


class _Rtc:
    """The device's real-time clock (device.port.time_ms: the time its states and consent
    records carry). On a board it is the clock its samples are dated by; here that is the data
    clock, so the board being stepped lends its clock for the step. Outside a step (nothing
    simulated is running) it is the wall clock, as port's own."""

    clock: DeviceClock | None = None
    wall = staticmethod(port.time_ms)

    @classmethod
    def time_ms(cls) -> int:
        return cls.clock.now_ms if cls.clock is not None else cls.wall()


port.time_ms = _Rtc.time_ms


class Behaviour(Protocol):
    """The simulated user of a product (fleetloop.fleet.behaviour builds them)."""

    product: str

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> dict[str, Any] | None: ...

    def rest_ms(self, t_ms: int, settings: Mapping[str, int]) -> int: ...


class BehaviourProfile:
    """device.profiles' interface over a simulated user: the sensor of a simulated product.
    It reads the data clock and the device's applied settings, so the user reacts to the
    config the device verified and applied."""

    def __init__(self, behaviour: Behaviour, clock: DeviceClock, conf: settings.Settings) -> None:
        self.behaviour = behaviour
        self.clock = clock
        self.conf = conf
        self.name = behaviour.product

    def sample(self) -> dict[str, Any] | None:
        return self.behaviour.sample(self.clock.now_ms, self.conf.values)

    def rest_ms(self) -> int:
        return self.behaviour.rest_ms(self.clock.now_ms, self.conf.values)


@dataclass
class Counters:
    """What the fleet's devices reported, summed (their event lines on a board)."""

    events: dict[str, int] = field(default_factory=dict)
    resets: dict[str, int] = field(default_factory=dict)
    connect_times: list[float] = field(default_factory=list)  # monotonic, one per CONNACK

    def count(self, name: str) -> None:
        self.events[name] = self.events.get(name, 0) + 1


class Board:
    def __init__(self, image: Path, behaviour: Behaviour, fleet: FleetClock, reactor: Reactor,
                 counters: Counters, base: Mapping[str, int] | None = None) -> None:
        self.image = image
        self.ident = json.loads((image / "identity.json").read_text())
        self.device_id: str = self.ident["id"]
        self.behaviour = behaviour
        self.fleet = fleet
        self.reactor = reactor
        self.counters = counters
        self.base = dict(base or {})
        # On from the span's start (a fleet takes wall seconds, hours of data time, to boot:
        # the boards catch up tick by tick); fleet.now() for a clock not started yet.
        self.clock = DeviceClock(fleet.start_ms or fleet.now())
        self.powered = False  # started at least once (a later power-on is back from off)
        self.context = client_context(str(image / "certs"))
        self.config_pub = (image / "keys" / "config.pub").read_bytes()
        self.agent: agent_module.Agent | None = None
        self.down_until = 0.0  # monotonic time a reset or a power cut keeps it off
        self.failures = 0  # resets in a row without a stable run (the back-off's count)
        self.booted_at = 0.0
        self.cause = ("none", 0)  # why this power-on started, resets so far (data/reset.json)
        self.sent = 0  # telemetry PUBLISHes over every run, re-sends included
        self.put_times: dict[int, float] | None = None  # seq -> wall time written (probes)
        self.sent_times: dict[int, float] = {}  # seq -> wall time first sent (probes)
        self.slot: str | None = None  # the firmware slot the first stage chose (None: no slots)

    # -- lifecycle ---------------------------------------------------------------------------
    def boot(self, power_on: bool = True) -> None:
        """A start, as device/main.py's (without the module unloading). After a power-on the
        reset's cause is read (and reported); a restart for a config keeps it, as main.py's
        loop does."""
        data = self.image / "data"
        data.mkdir(exist_ok=True)
        if power_on:
            self.cause = read_reset(data)
            self.slot = self._first_stage()
        cause, resets = self.cause
        if (data / "ota" / "go").exists() and self._install():
            return  # switched: off for a moment, then the first stage boots the trial
        conf = settings.Settings(str(data), self.device_id, self.base)
        conf.load()
        self._verify_staged(conf)
        if power_on and self.powered:  # back from off: what happened meanwhile went unmeasured
            self.clock.now_ms = self.fleet.now()
        # Otherwise the device goes on from its own clock: the first start measures from the
        # span's start, and a restart (for a config, a consent change), which takes a board
        # about a second, from the tick that stopped it (a board may run behind the fleet's
        # clock on a loaded machine and catches up tick by tick), not from the fleet's time
        # nor after the restart's wall time (hours of data time either way: rides in them
        # would go unmeasured).
        self.powered = True
        agreed = consent.start(str(self.image), self.ident, conf.version, self._emit)
        profile = BehaviourProfile(self.behaviour, self.clock, conf)
        self.agent = app.build(
            str(self.image), self.ident, conf, None, self._emit, (cause, resets, None), agreed,
            opener=opener(self.reactor, self.context, self.ident["broker_host"],
                          self.ident["broker_port"], self),
            profile=profile, clock=self.clock, slot=self.slot)
        write_reset(data, "none", resets)  # reported once; a cut from here on is "power"
        self._count_sends(self.agent)
        if self.put_times is not None:
            self._time_puts(self.agent)
        self.agent.begin()
        self.booted_at = time.monotonic()

    def _first_stage(self) -> str | None:
        """device/boot.py's slot choice, on an image with slots. The code that runs is this
        process's either way: a simulated device's slots, installer and first stage are real,
        its new version's code is not."""
        fw = self.image / "fw"
        if not (fw / "a.img").is_file():
            return None
        return first_stage.choose(str(self.image), lambda s: (fw / f"{s}.img").is_file())

    def _install(self) -> bool:
        """device/install.py's step (main.py runs it on a fresh heap); True when it switched
        slots and the board resets into the trial boot."""
        try:
            versions = json.loads((self.image / "fw" / "boot.json").read_text())
        except (OSError, ValueError):
            versions = {}
        event, switched = install.run(str(self.image), self.slot, versions,
                                      self.ident["profile"], self._emit)
        self.counters.count(f"update_{event['status']}")
        if switched:
            _, count = read_reset(self.image / "data")
            write_reset(self.image / "data", "requested", count + 1)
            self.down_until = time.monotonic() + 0.5
        return bool(switched)

    def _count_sends(self, agent: agent_module.Agent) -> None:
        client = agent.client
        publish = client.publish
        telemetry = agent.topics[0]

        def counted(topic: bytes, payload: Any, qos: int = 0, retain: bool = False) -> int:
            if topic is telemetry:
                self.sent += 1
                if self.put_times is not None:
                    self._note_sent(payload)
            return publish(topic, payload, qos, retain)

        client.publish = counted  # type: ignore[method-assign]

    def _note_sent(self, payload: bytes) -> None:
        at = payload.find(b',"s":')
        seq = int(payload[at + 5:payload.find(b",", at + 5)])
        self.sent_times.setdefault(seq, time.monotonic())

    def _time_puts(self, agent: agent_module.Agent) -> None:
        """Note when each record is written (fleetloop.fleet.latency)."""
        buf = agent.buf
        put = buf.put
        times = self.put_times
        assert times is not None

        def timed(ts_ms: int, metrics: dict[str, Any]) -> int:
            seq: int = put(ts_ms, metrics)
            times[seq] = time.monotonic()
            return seq

        buf.put = timed  # type: ignore[method-assign]

    def _verify_staged(self, conf: settings.Settings) -> None:
        if port.exists(conf.pending_path):
            event = config.process_pending(conf, self.config_pub)
            if event is not None:
                self.counters.count("config_" + str(event["status"]))

    def power_cut(self, off_s: float) -> None:
        """Power gone now, back after off_s: no DISCONNECT, the broker sees the link die."""
        agent = self.agent
        self.agent = None
        if agent is not None:
            client = agent.client
            if client.conn is not None:
                client.conn.close()  # abort: no offline status, no DISCONNECT (the will fires)
                client.conn = None
            agent.buf.close()  # written records are on flash already (flushed at put)
            closer = getattr(agent.profile, "close", None)
            if closer:
                closer()
        _, count = read_reset(self.image / "data")
        write_reset(self.image / "data", "power", count + 1)
        self.counters.resets["power"] = self.counters.resets.get("power", 0) + 1
        self.down_until = time.monotonic() + off_s

    def shut_down(self) -> None:
        """The owner switches it off properly: offline status, DISCONNECT, buffer synced."""
        if self.agent is not None:
            try:
                self.agent.close()
            finally:
                self.agent = None

    def _reset(self, cause: str, error: BaseException) -> None:
        """What a board does on an uncaught error: reset, report the cause at the next start."""
        self.counters.resets[cause] = self.counters.resets.get(cause, 0) + 1
        agent = self.agent
        self.agent = None
        if agent is not None:
            try:
                agent.close()
            except Exception:  # noqa: BLE001 - closing is a courtesy; the reset happens anyway
                pass
        _, count = read_reset(self.image / "data")
        write_reset(self.image / "data", cause, count + 1)
        stable = time.monotonic() - self.booted_at > 60
        self.failures = 1 if stable else self.failures + 1
        self.down_until = time.monotonic() + backoff_s(self.failures)
        self.counters.count(f"reset: {type(error).__name__}: {str(error)[:80]}")

    # -- stepping ----------------------------------------------------------------------------
    def step(self) -> float:
        """Advance the device; returns wall seconds until it wants the next step unless its
        socket wakes it first."""
        _Rtc.clock = self.clock
        try:
            return self._step()
        finally:
            _Rtc.clock = None

    def _step(self) -> float:
        now = time.monotonic()
        if self.agent is None:
            if now < self.down_until:
                return self.down_until - now
            try:
                self.boot()
            except MemoryError as e:
                self._reset("memory", e)
                return self.down_until - now
            except Exception as e:  # noqa: BLE001 - whatever it was, a board would reset
                self._reset("crash", e)
                return self.down_until - now
        try:
            return self._turn()
        except MemoryError as e:
            self._reset("memory", e)
        except Exception as e:  # noqa: BLE001
            self._reset("crash", e)
        return max(0.0, self.down_until - time.monotonic())

    def _turn(self) -> float:
        agent = self.agent
        assert agent is not None
        fleet_now = self.fleet.now()
        clock = self.clock
        sess = agent.link
        sess.service(0)
        for _ in range(64):  # catch up tick by tick, but let the other devices have a turn
            clock.now_ms = min(fleet_now, agent.next_sample)
            wait_ms = agent.step()
            if agent.stop is not None:
                return self._restart()
            if agent.next_sample > fleet_now:
                break
        if wait_ms == 0 or agent.next_sample <= fleet_now:
            return 0.0
        clock.now_ms = fleet_now
        wait_s = min(IDLE_STEP_S, self.fleet.wall_s(agent.sample_in()))
        if sess.state == link.DOWN:
            wait_s = min(wait_s, max(0, port.ticks_diff(sess.retry_at, port.ticks_ms())) / 1000)
        return wait_s

    def _restart(self) -> float:
        """The agent stopped for a staged config, a consent request or an update's heavy step
        (device/main.py's loop)."""
        assert self.agent is not None
        why = self.agent.stop
        self.agent.close()
        self.agent = None
        if why == "update":
            (self.image / "data" / "ota" / "go").write_bytes(b"")
        self.boot(power_on=False)
        return 0.0 if self.agent is not None else max(0.0, self.down_until - time.monotonic())

    # -- reading it --------------------------------------------------------------------------
    def _emit(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name == "connected":
            self.counters.connect_times.append(time.monotonic())
        if name in ("resend", "bad_ack", "bad_hint", "bad_sample", "disconnected", "connected"):
            self.counters.count(str(name))
        elif name == "config":
            self.counters.count("config_" + str(event.get("status")))

    @property
    def up(self) -> bool:
        return self.agent is not None and self.agent.link.up

    def totals(self) -> tuple[int, int]:
        """(records written, records acked by the gateway): seqs of its buffer, read from
        flash when it is off."""
        if self.agent is not None:
            return self.agent.buf.last, self.agent.buf.acked
        return _buffer_totals(self.image / "data" / "buffer")

    def consent_records(self) -> int:
        """Consent records in its stream (data/consent.json's count)."""
        try:
            saved = json.loads((self.image / "data" / "consent.json").read_text())
            return int(saved.get("count", 0))
        except (OSError, ValueError, AttributeError):
            return 0


def _buffer_totals(root: Path) -> tuple[int, int]:
    try:
        meta = json.loads((root / "meta.json").read_text())
        acked = int(meta.get("acked", 0))
    except (OSError, ValueError):
        acked = 0
    last = acked
    for seg in sorted(root.glob("seg-*.log")):
        first = int(seg.name[4:-4])
        lines = seg.read_bytes().count(b"\n")
        last = max(last, first + lines - 1)
    return last, acked

