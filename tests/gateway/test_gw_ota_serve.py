"""The chunk server on its own (a recording sender and a hand-moved clock): what each fetch is
answered with, how many devices download at once, and that one device's garbage or flood
touches nobody else's download. The whole path over a real broker is in test_gw_updates.py."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import gw_bundles as gb
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ota_cache import Ready, read_bundle, verify_bundle
from gateway.ota_serve import ACTIVE_S, CHUNKS_PER_FETCH, ChunkServer
from protocol import ota

SIZES = {"device/agent.mpy": 3000, "device/buffer.mpy": 100, "protocol/ota.mpy": 0}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Wire:
    """Records what the server sends, decoded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str, int, int, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        kind, oid, f, o, data = ota.decode_chunk(payload)
        self.sent.append((topic, kind, oid, f, o, bytes(data)))
        return True

    def take(self) -> list[tuple[str, int, str, int, int, bytes]]:
        out, self.sent = self.sent, []
        return out


@functools.cache
def _ready(home: Path) -> Ready:
    data, _ = gb.full(home, "bike", "0.2.0", gb.some_files(3, SIZES))
    return verify_bundle("bike-0.2.0", read_bundle(data), len(data),
                         (home / "keys" / "release.pub").read_bytes(), None)


def _server(home: Path, devices: tuple[str, ...] = ("bike-1", "bike-2"), concurrent: int = 16,
            ) -> tuple[ChunkServer, Wire, Clock, Ready]:
    ready, wire, clock = _ready(home), Wire(), Clock()
    offers = {d: ready for d in devices}
    return (ChunkServer(wire, offers.get, concurrent, 40.0, clock=clock,
                        rng=random.Random(1)), wire, clock, ready)


def _download(server: ChunkServer, wire: Wire, device: str, ready: Ready, index: int) -> bytes:
    out = b""
    while True:
        server.handle(device, ota.encode_fetch(ready.offer_id, index, len(out)))
        got = wire.take()
        assert got and all(k == ota.CHUNK_DATA and t == f"fleet/{device}/chunk"
                           for t, k, *_ in got)
        assert len(got) <= CHUNKS_PER_FETCH
        for _, _, _, f, o, data in got:
            assert (f, o) == (index, len(out))
            out += data
        if len(out) >= len(ready.files[index]):
            return out


def test_every_file_reassembles_from_its_chunks(home: Path) -> None:
    server, wire, _, ready = _server(home)
    for index in range(len(SIZES) + 1):
        assert _download(server, wire, "bike-1", ready, index) == ready.files[index]
    st_ = server.status()
    assert st_["downloading"] == ["bike-1"] and st_["error_replies"] == 0
    assert st_["bytes_sent"] == sum(len(f) for f in ready.files.values())


def test_fetches_that_cannot_be_served_get_an_error_with_the_reason(home: Path) -> None:
    server, wire, _, ready = _server(home)
    other = "0123456789abcdef"
    end = len(ready.files[1])
    for fetch, reason in (((other, 0, 0), f"no offer {other}"),
                          ((ready.offer_id, 4, 0), "file 4 is not in this bundle"),
                          ((ready.offer_id, 1, end + 1),
                           f"offset {end + 1} is past the end of file 1 ({end} bytes)")):
        server.handle("bike-1", ota.encode_fetch(*fetch))
        [(topic, kind, oid, f, o, data)] = wire.take()
        assert (topic, kind, oid, f, o) == ("fleet/bike-1/chunk", ota.CHUNK_ERROR, fetch[0],
                                            fetch[1], fetch[2])
        assert data.decode() == reason
    server.handle("mirror-1", ota.encode_fetch(ready.offer_id, 0, 0))  # no offer of its own
    assert wire.take()[0][1] == ota.CHUNK_ERROR
    assert server.status()["downloading"] == []  # errors take no download place


def test_beyond_the_limit_a_device_is_told_to_come_back(home: Path) -> None:
    server, wire, clock, ready = _server(home, concurrent=1)
    server.handle("bike-1", ota.encode_fetch(ready.offer_id, 0, 0))
    assert wire.take()[0][1] == ota.CHUNK_DATA
    server.handle("bike-2", ota.encode_fetch(ready.offer_id, 0, 0))
    [(_, kind, _, _, _, data)] = wire.take()
    assert kind == ota.CHUNK_BUSY and 20_000 <= int(data) < 30_000
    clock.now += ACTIVE_S - 1  # bike-1 still counts as downloading
    server.handle("bike-2", ota.encode_fetch(ready.offer_id, 0, 0))
    assert wire.take()[0][1] == ota.CHUNK_BUSY
    clock.now += 2  # bike-1 went quiet a while ago: its place is free
    server.handle("bike-2", ota.encode_fetch(ready.offer_id, 0, 0))
    assert wire.take()[0][1] == ota.CHUNK_DATA
    assert server.status()["busy_replies"] == 2 and server.status()["downloading"] == ["bike-2"]


def test_a_flood_is_dropped_at_the_door_and_others_still_download(home: Path) -> None:
    server, wire, _, ready = _server(home)
    fetch = ota.encode_fetch(ready.offer_id, 0, 0)
    for _ in range(500):  # in the same instant
        server.submit("fleet/bike-2/fetch", fetch)
    server.submit("fleet/bike-2/fetch", b"x" * 129)
    server.submit("fleet/bike/2/fetch", fetch)
    dropped = server.status()["dropped"]
    assert dropped == {"rate": 460, "size": 1, "topic": 1}
    server.submit("fleet/bike-1/fetch", fetch)  # bike-1 has its own bucket
    assert server.status()["queued"] == 41
    assert _download(server, wire, "bike-1", ready, 1) == ready.files[1]


@settings(max_examples=100, deadline=None)
@given(payload=st.one_of(
    st.binary(max_size=140),
    st.dictionaries(st.sampled_from(["v", "id", "f", "o", "x"]),
                    st.one_of(st.integers(-2**40, 2**40), st.text(max_size=20), st.none(),
                              st.floats(allow_nan=True), st.booleans()),
                    max_size=5).map(lambda d: __import__("json").dumps(d).encode())))
def test_garbage_fetches_are_ignored_without_harm(keys_dir: Path, payload: bytes) -> None:
    server, wire, _, ready = _server(keys_dir.parent)  # the session's keys: read only
    server.submit("fleet/bike-2/fetch", payload)
    server.handle("bike-2", payload)
    for _, kind, *_ in wire.take():
        assert kind == ota.CHUNK_ERROR  # at most an error about an unknown offer or file
    assert _download(server, wire, "bike-1", ready, 2) == ready.files[2]
