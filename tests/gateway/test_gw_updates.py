"""Updates through a whole gateway: its real Mosquitto, the stand-in cloud of gwkit (its update
endpoints stand in for the cloud's own, built at the same time) and paho clients holding device
certificates. A device gets its offer retained, fetches every file in chunks and reassembles the
bundle's bytes; the bundle comes from the cloud once, however many devices take it and across a
restart; offers the cloud withdraws are cleared; a bundle that fails verification is never
offered."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gw_bundles as gb
from gwkit import Device, FakeCloud, RunningGateway, gateway_settings, wait_for

from gateway.ota_serve import CHUNKS_PER_FETCH
from protocol import ota

SIZES = {"device/agent.mpy": 2500, "device/buffer.mpy": 700, "protocol/ota.mpy": 5}
KEY = "bike-0.2.0"


def _device(devices: Callable[..., Device], home: Path, name: str, port: int) -> Device:
    return devices(home, name, port, subscribe=[f"fleet/{name}/update", f"fleet/{name}/chunk"])


def _offers(dev: Device) -> list[bytes]:
    return [p for t, p in dev.received if t.endswith("/update")]


def _ask(dev: Device, offer_id: str, index: int, offset: int,
         size: int | None = None) -> list[tuple[int, bytes]]:
    """Send one fetch; the chunks that answer it (kind, data), in order: the first, or with
    the file's `size` every chunk of the run (up to CHUNKS_PER_FETCH, or to the file's end)."""
    mark = len(dev.received)
    dev.publish(f"fleet/{dev.device_id}/fetch", ota.encode_fetch(offer_id, index, offset), qos=0)

    def answer() -> list[tuple[int, bytes]]:
        out = []
        for topic, payload in dev.received[mark:]:
            if topic.endswith("/chunk"):
                kind, _, f, o, data = ota.decode_chunk(payload)
                if f == index:
                    out.append((kind, bytes(data)))
        return out

    def whole() -> bool:
        got = answer()
        if not got or size is None or got[0][0] != ota.CHUNK_DATA:
            return bool(got)
        return len(got) >= CHUNKS_PER_FETCH or offset + sum(len(d) for _, d in got) >= size

    wait_for(whole, 5, f"the answer to fetch {index}@{offset}")
    return answer()


def _download(dev: Device, offer_id: str, index: int, size: int) -> bytes:
    out = b""
    while len(out) < size:
        for kind, data in _ask(dev, offer_id, index, len(out), size):
            assert kind == ota.CHUNK_DATA, data
            out += data
    return out


def test_devices_download_through_the_cache_which_fetched_it_once(
        home: Path, cloud: FakeCloud, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    files = gb.some_files(7, SIZES)
    data, text = gb.full(home, "bike", "0.2.0", files)
    cloud.bundles[KEY] = data
    cloud.update_offers = [gb.entry("bike-1", KEY, data, text), gb.entry("bike-2", KEY, data, text)]
    settings = gateway_settings(home, cloud.url, ota_poll_s=0.2, ota_concurrent=1)
    gw = run_gateway(settings)
    wait_for(lambda: gw.status()["updates"]["offers"] == 2, 10, "two offers published")

    bike = _device(devices, home, "bike-1", gw.port)  # after the publish: the offer is retained
    wait_for(lambda: _offers(bike), 5, "bike-1's offer")
    offer = ota.decode_offer(_offers(bike)[-1])
    assert offer == {**cloud.update_offers[0]["offer"]}  # type: ignore[dict-item]
    file0 = _download(bike, offer["id"], 0, offer["size"])
    assert file0 == gb.file0(data)
    listed = ota.parse_manifest(file0[ota.SIG_BYTES:].decode())["files"]
    got = {path: _download(bike, offer["id"], i + 1, size)
           for i, (path, size, _) in enumerate(listed)}
    assert got == files

    # what cannot be served is answered with the reason
    for (oid, f, o), reason in (
            (("00000000000000ff", 0, 0), "no offer 00000000000000ff"),
            ((offer["id"], 9, 0), "file 9 is not in this bundle"),
            ((offer["id"], 3, 6), "offset 6 is past the end of file 3 (5 bytes)")):
        assert _ask(bike, oid, f, o) == [(ota.CHUNK_ERROR, reason.encode())]

    # a second device on the same bundle: the one download place is taken by bike-1
    other = _device(devices, home, "bike-2", gw.port)
    wait_for(lambda: _offers(other), 5, "bike-2's offer")
    [(kind, wait)] = _ask(other, offer["id"], 0, 0)
    assert kind == ota.CHUNK_BUSY and 20_000 <= int(wait) < 30_000
    st = gw.status()["updates"]
    assert st["cache"]["bundles"] == [{"key": KEY, "bytes": len(data), "downloads": 1,
                                       "in_use": True}]
    assert st["serving"]["downloading"] == ["bike-1"] and st["serving"]["busy_replies"] == 1
    assert st["offers_published"] == 2 and st["serving"]["error_replies"] == 3

    # a restart: nothing is downloaded or published again, and the cache still serves
    for dev in (bike, other):  # one session per client id: these would reconnect and collide
        dev.client.disconnect()
        dev.client.loop_stop()
    gw.stop()
    polls = cloud.update_polls
    gw = run_gateway(settings)
    wait_for(lambda: cloud.update_polls >= polls + 3, 10, "polls after the restart")
    assert cloud.bundle_downloads[KEY] == 1
    st = gw.status()["updates"]
    assert st["offers"] == 2 and st["offers_published"] == 0
    assert st["cache"]["cloud_downloads"] == 1
    again = _device(devices, home, "bike-2", gw.port)
    wait_for(lambda: _offers(again), 5, "bike-2's offer, kept by the broker")
    assert _download(again, offer["id"], 0, offer["size"]) == gb.file0(data)

    # the cloud withdraws bike-2's offer: the retained offer is cleared
    cloud.update_offers = cloud.update_offers[:1]
    wait_for(lambda: _offers(again)[-1] == b"", 5, "an empty retained offer")
    assert _ask(again, offer["id"], 0, 0) == [(ota.CHUNK_ERROR, f"no offer {offer['id']}".encode())]
    assert gw.status()["updates"]["offers_cleared"] == 1
    assert cloud.bundle_downloads[KEY] == 1


def test_a_tampered_bundle_is_refused_and_never_offered(
        home: Path, cloud: FakeCloud, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(7, SIZES))
    tampered = bytearray(data)
    tampered[-1] ^= 0x01
    cloud.bundles[KEY] = bytes(tampered)
    good_entry = gb.entry("bike-1", KEY, data, text)
    cloud.update_offers = [good_entry, {"device": "bike/2", "bundle": KEY, "base": None,
                                        "offer": good_entry["offer"]},
                           {**good_entry, "device": "mirror-1", "offer": {"v": 2}}]
    gw = run_gateway(gateway_settings(home, cloud.url, ota_poll_s=0.1))
    bike = _device(devices, home, "bike-1", gw.port)
    wait_for(lambda: gw.status()["updates"]["cache"]["refused"], 10, "the refusal")
    polls = cloud.update_polls
    wait_for(lambda: cloud.update_polls >= polls + 5, 10, "more polls")
    st = gw.status()["updates"]
    [refused] = st["cache"]["refused"]
    assert refused["key"] == KEY and "sha256 does not match the manifest" in refused["reason"]
    assert cloud.bundle_downloads[KEY] == 1  # not again at every poll
    assert st["offers"] == 0 and _offers(bike) == []
    assert len(st["problems"]) == 2 and all("offer entry refused" in p for p in st["problems"])
    # the reason reaches the technician's diag as well
    from gateway.diag import problems
    assert any(KEY in p and "sha256" in p for p in problems(gw.status()))
    json.dumps(gw.status())  # and the whole status stays JSON


def test_a_flood_of_fetches_holds_up_neither_telemetry_nor_another_download(
        home: Path, cloud: FakeCloud, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(7, SIZES))
    cloud.bundles[KEY] = data
    cloud.update_offers = [gb.entry(d, KEY, data, text) for d in ("bike-1", "bike-2")]
    gw = run_gateway(gateway_settings(home, cloud.url, ota_poll_s=0.2))
    flooder = _device(devices, home, "bike-1", gw.port)
    good = devices(home, "bike-2", gw.port, subscribe=[
        "fleet/bike-2/ack", "fleet/bike-2/update", "fleet/bike-2/chunk"])
    wait_for(lambda: _offers(good), 10, "bike-2's offer")
    offer = ota.decode_offer(_offers(good)[-1])
    assert offer is not None
    stop = threading.Event()

    def flood() -> None:  # ~2,000 fetches a second, valid and not, 50 times the allowed rate
        topic = "fleet/bike-1/fetch"
        while not stop.is_set():
            for i in range(50):
                flooder.client.publish(topic, ota.encode_fetch(offer["id"], i % 4, 0))
                flooder.client.publish(topic, b'{"v":1,"id":"' + b"z" * i + b'"}')
            time.sleep(0.05)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        for seq in range(1, 51):
            good.send(seq)
        wait_for(lambda: good.acked >= 50, 10, "bike-2's records acknowledged")
        took = time.monotonic() - started
        assert _download(good, offer["id"], 0, offer["size"]) == gb.file0(data)
    finally:
        stop.set()
        thread.join(5)
    serving = gw.status()["updates"]["serving"]
    assert serving["dropped"]["rate"] > 200, serving
    assert took < 5, f"50 records took {took:.1f} s to be acknowledged during the flood"
