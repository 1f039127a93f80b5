"""Update offers, cloud -> devices: pull this gateway's offers from the cloud, make sure each offered bundle is in the cache (downloaded once, verified: gateway.ota_cache),
and publish each device's offer retained, QoS 1, on fleet/<id>/update once its bundle is
there; publish an empty retained payload when the cloud no longer lists an offer for a device
(its rollout was paused or aborted, or the device is done).

What the broker holds is remembered in gateway.db (gateway.ota_records) only after the broker
acknowledged it, like the config downlink's cursor: a restart publishes nothing again that the
broker already holds, and an offer the cloud withdrew while the gateway was down is still
cleared at the first poll that succeeds. While the cloud cannot be reached nothing changes:
devices keep their offers and the cache keeps serving them.

An offer is published only if it matches its bundle (id, product, version, size of file 0,
base): the device would refuse a mismatch anyway, after downloading it. The chunk server
(gateway.ota_serve) asks serving() for the bundle behind a device's current offer.

When to pull: between pulls the gateway holds the cloud's long-poll (gateway.longpoll: GET
/api/v1/gateway/watch?offers=<tag>), which the cloud answers as soon as the tag of this
gateway's offers differs (a new rollout, a wave started, a pause, an abort, a device done), so
an offer reaches the devices within about a second, behind NAT too. The gateway still pulls
every `safety_s` without a change (a missed wake costs at most that), and every `interval_s`
while the long-poll is off or failing (an older cloud, the cloud away): a failing long-poll is
tried again only after such a wait, never in a loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.longpoll import LongPoll, LongPollError, NoLongPoll
from gateway.ota_cache import BundleCache, Ready, Source
from gateway.ota_cloud import OfferEntry, UpdateCloud, UpdateCloudError
from gateway.ota_records import OtaRecords, Published
from protocol import topics

log = logging.getLogger("fleetloop.gateway.updates")

PROBLEMS_SHOWN = 20
# A cloud whose watch answers without an offers tag holds for configs only: poll the offers
# at the fixed interval, and ask it again this much later (it may have been upgraded).
_NO_OFFERS_WATCH_S = 600.0

# (topic, payload, retain, timeout_s) -> True once the broker acknowledged it
Publish = Callable[[str, bytes, bool, float], bool]


class OfferSource(Source, Protocol):
    def offers(self) -> tuple[list[OfferEntry], list[str]]: ...


class UpdatesError(GatewayError):
    """One poll could not finish (cloud or broker); what was done stays done."""


def mismatch(entry: OfferEntry, ready: Ready) -> str | None:
    """Why the cloud's offer does not describe its bundle, or None."""
    file0 = len(ready.files[0])
    for what, said, real in (("id", entry.offer_id, ready.offer_id),
                             ("product", entry.product, ready.product),
                             ("version", entry.version, ready.version),
                             ("size", entry.size, file0), ("base", entry.base, ready.base)):
        if said != real:
            return f"offer says {what} {said}, bundle {entry.bundle} has {real}"
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


class Updates:
    def __init__(self, records: OtaRecords, cache: BundleCache, cloud: UpdateCloud,
                 publish: Publish, interval_s: float = 5.0, publish_timeout_s: float = 10.0,
                 clock_ms: Callable[[], int] = _now_ms, long_poll: LongPoll | None = None,
                 safety_s: float = 60.0) -> None:
        self._records = records
        self._cache = cache
        self._cloud = cloud
        self._publish = publish
        self._interval_s = interval_s  # between pulls without a long-poll
        self._long_poll = long_poll
        self._safety_s = safety_s  # between pulls while the long-poll holds and nothing changes
        self._tag: str | None = None  # the cloud's tag of our offers, from its last answer
        self._tagless_until = 0.0  # monotonic: the cloud's watch knows no offers until then
        self._long_poll_error: str | None = None  # the last one, logged once
        self._publish_timeout_s = publish_timeout_s
        self._clock_ms = clock_ms
        self._published: dict[str, Published] = {}  # what the broker holds (this thread only)
        self._restored = False
        self._lock = threading.Lock()  # guards the fields below
        self._serving: dict[str, Ready] = {}  # device -> the bundle of its current offer
        self._offers_published = 0
        self._offers_cleared = 0
        self._problems: list[str] = []  # the last poll's, the first PROBLEMS_SHOWN
        self._problems_total = 0
        self._seen: set[str] = set()
        self._last_ok_ms: int | None = None
        self._last_error: str | None = None
        self._pulls = 0
        self._wakes = 0  # pulls the long-poll asked for (the offers changed)

    def serving(self, device: str) -> Ready | None:
        """The bundle behind `device`'s current offer (any thread)."""
        with self._lock:
            return self._serving.get(device)

    def restore(self) -> None:
        """Serve the offers the broker holds from before a restart, straight from the cache,
        before the cloud is asked (it may be unreachable for a while)."""
        self._published = self._records.published()
        for p in self._published.values():
            ready = self._cache.load(p.bundle)
            if ready is not None and ready.offer_id == p.offer_id:
                with self._lock:
                    self._serving[p.device] = ready
        self._restored = True

    def run(self, stop: threading.Event) -> None:
        if not self._restored:
            self.restore()
        with self._cloud as cloud:
            while True:
                if self._tag is None:
                    # Before the pull: a change after it ends the wait below.
                    self._tag = self._current_tag(stop)
                try:
                    self.poll_once(cloud)
                    pulled = True
                except UpdatesError as exc:
                    self._note_error(str(exc))
                    pulled = False  # try again after interval_s, not after a held wait
                if pulled and self._tag is not None and \
                        self._wait_for_change(self._tag, stop):
                    continue
                if stop.wait(self._interval_s):
                    return

    def _long_poll_on(self) -> bool:
        return self._long_poll is not None and self._long_poll.enabled and \
            time.monotonic() >= self._tagless_until

    def _current_tag(self, stop: threading.Event) -> str | None:
        """The cloud's tag of this gateway's offers now (None: the long-poll is off or
        failed, or the cloud's watch does not know offers)."""
        if not self._long_poll_on():
            return None
        assert self._long_poll is not None
        try:
            answer = self._long_poll.ask({"offers": ""}, stop, hold=False)
        except LongPollError as exc:
            self._long_poll_failed(exc)
            return None
        if answer is None:
            return None
        tag = answer.get("offers")
        if not isinstance(tag, str):
            self._tagless_until = time.monotonic() + _NO_OFFERS_WATCH_S
            log.info("updates: the cloud's watch does not report offers (an older cloud): "
                     "polling every %g s", self._interval_s)
            return None
        with self._lock:
            self._long_poll_error = None
        return tag

    def _wait_for_change(self, tag: str, stop: threading.Event) -> bool:
        """Hold the long-poll until the cloud's tag differs from `tag` or `safety_s` went by
        (True: pull now; the new tag is kept for the next wait), False when it failed or the
        gateway stops (the caller waits `interval_s` first: a failure never loops)."""
        assert self._long_poll is not None
        seen: dict[str, Any] = {}

        def changed(answer: dict[str, Any]) -> bool:
            seen["tag"] = answer.get("offers")
            return seen["tag"] != tag

        try:
            due = self._long_poll.wait_for({"offers": tag}, changed, stop, self._safety_s)
        except LongPollError as exc:
            self._long_poll_failed(exc)
            return False
        if not due:
            return False
        with self._lock:
            self._long_poll_error = None
        new = seen.get("tag", tag)
        if new != tag:
            with self._lock:
                self._wakes += 1
        self._tag = new if isinstance(new, str) else None
        return True

    def _long_poll_failed(self, exc: LongPollError) -> None:
        """Pull at the fixed interval for now; say so once per distinct reason (the pulls
        may well work meanwhile: this is no fault of theirs)."""
        self._tag = None  # asked again after the next wait, before the pull
        with self._lock:
            repeated = self._long_poll_error == str(exc)
            self._long_poll_error = str(exc)
        if repeated:
            return
        if isinstance(exc, NoLongPoll):  # an older cloud: the fixed polls are no fault
            log.info("updates: %s", exc)
        else:
            log.warning("updates: long-poll failed, polling every %g s: %s",
                        self._interval_s, exc)

    def _note_error(self, error: str) -> None:
        with self._lock:
            repeated = self._last_error == error
            self._last_error = error
        if not repeated:
            log.warning("updates: %s", error)

    def poll_once(self, cloud: OfferSource) -> int:
        """Pull the offers, cache their bundles, publish and clear; returns the number of
        offers published or cleared."""
        try:
            entries, problems = cloud.offers()
        except UpdateCloudError as exc:
            raise UpdatesError(str(exc)) from exc
        keys = {e.bundle for e in entries} | {p.bundle for p in self._published.values()}
        ready = {}
        for key in sorted({e.bundle for e in entries}):
            r = self._cache.ensure(key, cloud, keys)
            if r is not None:
                ready[key] = r
        desired: dict[str, tuple[OfferEntry, Ready]] = {}
        for e in entries:
            r = ready.get(e.bundle)
            why = mismatch(e, r) if r is not None else None
            if why is not None:
                problems.append(f"offer for {e.device} refused: {why}")
            elif r is not None:
                desired[e.device] = (e, r)
        self._note(problems)
        changed = self._publish_desired(desired) + self._clear_withdrawn(desired)
        # Bundles the cloud still offers stay in memory (and their refusals stay on record,
        # with their waits); the rest is read from disk again if it is offered again.
        self._cache.retain({e.bundle for e in entries}
                           | {p.bundle for p in self._published.values()})
        with self._lock:
            self._last_ok_ms = self._clock_ms()
            self._last_error = None
            self._pulls += 1
        return changed

    def _publish_desired(self, desired: dict[str, tuple[OfferEntry, Ready]]) -> int:
        n = 0
        for device, (e, r) in desired.items():
            with self._lock:  # servable before the device can see the offer
                self._serving[device] = r
            held = self._published.get(device)
            if held is not None and held.payload == e.payload:
                continue
            if not self._publish(topics.topic(device, topics.UPDATE), e.payload, True,
                                 self._publish_timeout_s):
                raise UpdatesError(f"could not publish the offer for {device} (broker down?)")
            p = Published(device, e.bundle, e.offer_id, e.payload)
            self._records.set_published(p, self._clock_ms())
            self._published[device] = p
            n += 1
            with self._lock:
                self._offers_published += 1
            log.info("offered %s %s to %s (bundle %s)", e.product, e.version, device, e.bundle)
        return n

    def _clear_withdrawn(self, desired: dict[str, tuple[OfferEntry, Ready]]) -> int:
        n = 0
        for device in [d for d in self._published if d not in desired]:
            with self._lock:
                self._serving.pop(device, None)
            if not self._publish(topics.topic(device, topics.UPDATE), b"", True,
                                 self._publish_timeout_s):
                raise UpdatesError(f"could not clear the offer for {device} (broker down?)")
            self._records.forget_published(device)
            del self._published[device]
            n += 1
            with self._lock:
                self._offers_cleared += 1
            log.info("cleared the update offer of %s", device)
        return n

    def _note(self, problems: list[str]) -> None:
        """This poll's problems replace the last poll's; each is logged when it first shows."""
        with self._lock:
            fresh = [p for p in problems if p not in self._seen]
            self._seen = set(problems)
            self._problems = problems[:PROBLEMS_SHOWN]
            self._problems_total = len(problems)
        for problem in fresh[:PROBLEMS_SHOWN]:
            log.error("updates: %s", problem)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"offers": len(self._serving), "offers_published": self._offers_published,
                    "offers_cleared": self._offers_cleared, "problems": list(self._problems),
                    "problems_total": self._problems_total,
                    "last_ok_ms": self._last_ok_ms, "last_error": self._last_error,
                    "pulls": self._pulls, "wakes": self._wakes,
                    "long_poll": self._tag is not None,
                    "long_poll_error": self._long_poll_error}
