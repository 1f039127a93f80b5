"""`GET /metrics`: the status as Prometheus text, for sites that monitor their gateways.

Built from the same `collect()` the status endpoint serves, at scrape time, through a
registry of its own (no process-wide default registry: two gateways in one process, as in
tests, never mix). Counters are the gateway's since its start; Prometheus handles the reset a
restart brings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "fleetloop_gateway_"

Collect = Callable[[], dict[str, Any]]


def _num(obj: Any, *path: str) -> float | None:
    """The number at `path` in a status dict, None when absent or not a number."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    if isinstance(obj, bool):
        return float(obj)
    return float(obj) if isinstance(obj, int | float) else None


# (name, help, path in the status, counter?); a series whose value is absent is left out
SERIES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("broker_up", "1 while the gateway's Mosquitto runs", ("broker", "up"), False),
    ("broker_restarts", "times the broker was restarted after it died", ("broker", "restarts"), True),
    ("devices_online", "devices whose status topic says online", ("devices", "online_count"), False),
    ("devices_known", "devices this gateway has seen", ("devices", "known"), False),
    ("records_ingested", "records stored since start", ("ingest", "records"), True),
    ("messages_rejected", "device messages refused since start", ("ingest", "rejected"), True),
    ("messages_quarantined", "device messages kept in quarantine", ("quarantine", "total"), True),
    ("spool_batches", "signed batches waiting for the cloud", ("spool", "batches"), False),
    ("spool_records", "records waiting for the cloud", ("spool", "records"), False),
    ("spool_bytes", "bytes the spool holds", ("spool", "bytes"), False),
    ("spool_oldest_age_seconds", "age of the oldest batch waiting", ("spool", "oldest_age_s"),
     False),
    ("spool_dropped_batches", "batches dropped over the spool's budget", ("spool", "dropped_batches"),
     True),
    ("dead_letters", "batches the cloud refused, kept as dead letters", ("spool", "dead_letters"),
     False),
    ("uplink_batches_sent", "batches the cloud accepted since start", ("uplink", "sent_batches"),
     True),
    ("uplink_failures", "failed uploads since start", ("uplink", "failures"), True),
    ("uplink_latency_ms", "time of the last successful upload", ("uplink", "latency_ms"), False),
    ("disk_free_bytes", "free bytes on the gateway's disk", ("disk", "free_bytes"), False),
)


class StatusCollector(Collector):
    def __init__(self, collect: Collect) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        st = dict(self._collect())
        online = (st.get("devices") or {}).get("online")
        st["devices"] = {**(st.get("devices") or {}),
                         "online_count": len(online) if isinstance(online, list) else None}
        for name, help_text, path, counter in SERIES:
            value = _num(st, *path)
            if value is None:
                continue
            family = CounterMetricFamily if counter else GaugeMetricFamily
            yield family(PREFIX + name, help_text, value=value)


def render(collect: Collect) -> bytes:
    """The Prometheus text of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(collect))
    return generate_latest(registry)
