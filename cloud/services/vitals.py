"""Vitals: every verified state of a device (protocol.state: connect, heartbeat, config and
consent states, with the vitals fields where its firmware sends them) is kept in
`heartbeats`, newest MAX_PER_DEVICE per device; older ones are pruned as new ones arrive.
The device's latest state stays on the device row (`reported`) for listings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cloud.store import DeviceRow, HeartbeatRow, Store

MAX_PER_DEVICE = 1000
MAX_PAGE = MAX_PER_DEVICE
# The vitals fields of a state (protocol.state), shown as a device's summary.
FIELDS = ("why", "uptime_s", "heap_free", "heap_low", "buffer_bytes", "buffered", "dropped",
          "reconnects", "resets", "reset_cause", "consent", "hint_ms", "rssi")
_VITALS_ONLY = ("why", "uptime_s", "heap_low", "buffer_bytes", "reconnects", "consent",
                "hint_ms", "rssi")


def rows(device_id: str, states: Sequence[dict[str, Any]], now_ms: int) -> list[HeartbeatRow]:
    """The heartbeat rows of a device's verified states (their tags dropped)."""
    return [
        HeartbeatRow(device=device_id, incarnation=st.get("i", 0), t=st.get("t", 0),
                     received_ms=now_ms, body={k: v for k, v in st.items() if k != "h"})
        for st in states
    ]


def store_states(
    store: Store, device_id: str, states: Sequence[dict[str, Any]], now_ms: int
) -> None:
    """Keep the states; call inside the ingest transaction."""
    store.insert_heartbeats(rows(device_id, states, now_ms), MAX_PER_DEVICE)


def page(store: Store, device_id: str, limit: int) -> list[HeartbeatRow]:
    """Newest first, at most `limit` (1..MAX_PAGE)."""
    return store.heartbeats(device_id, max(1, min(limit, MAX_PAGE)))


def summary(device: DeviceRow) -> dict[str, Any] | None:
    """The vitals of the device's latest state (`t` with them); None when it sent none."""
    state = device.reported
    if not state or not any(k in state for k in _VITALS_ONLY):
        return None
    out = {k: state[k] for k in FIELDS if k in state}
    if "t" in state:
        out["t"] = state["t"]
    return out
