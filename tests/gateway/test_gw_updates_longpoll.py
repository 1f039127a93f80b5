"""Update offers by long-poll against the real cloud (uvicorn) and a real gateway: with the
offers pull a minute apart, a rollout created while the gateway waits reaches the device's
retained update topic within seconds, and an abort clears it as fast: the cloud ends the
gateway's held request when its offers change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gw_bundles as gb
from gwkit import Device, RunningGateway, gateway_settings, wait_for
from test_gw_real_cloud import RealCloud

from protocol import ota

SIZES = {"device/agent.mpy": 1500, "device/buffer.mpy": 400}
BUNDLE_TYPE = "application/vnd.fleetloop.bundle"


def _offers(dev: Device) -> list[bytes]:
    return [p for t, p in dev.received if t.endswith("/update")]


def test_an_offer_reaches_the_device_through_the_long_poll_not_the_pull(
        home: Path, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    cloud = RealCloud(home).start()
    try:
        cloud.register(home)
        gw = run_gateway(gateway_settings(home, cloud.url, ota_poll_s=60.0, ota_safety_s=60.0,
                                          long_poll_s=25.0))
        bike = devices(home, "bike-1", gw.port,
                       subscribe=["fleet/bike-1/ack", "fleet/bike-1/update"])
        bike.send(1)
        wait_for(lambda: bike.acked == 1, 10, "a record acked")
        # The cloud assigns bike-1 to this gateway with its first batch.
        wait_for(lambda: gw.status()["uplink"]["sent_batches"] >= 1, 10, "the bike known")
        wait_for(lambda: gw.status()["updates"]["long_poll"], 10, "the gateway holding")
        pulls = gw.status()["updates"]["pulls"]

        data, text = gb.full(home, "bike", "0.2.0", gb.some_files(3, SIZES))
        with cloud.admin() as c:
            r = c.post("/api/v1/bundles", content=data, headers={"Content-Type": BUNDLE_TYPE})
            assert r.status_code == 201, r.text
            r = c.post("/api/v1/rollouts", json={"bundle": "bike-0.2.0",
                                                 "devices": ["bike-1"], "waves": [100]})
            assert r.status_code == 201, r.text
        wait_for(lambda: _offers(bike), 10, "the offer at the device, well before the pull")
        offer = ota.decode_offer(_offers(bike)[-1])
        assert (offer["id"], offer["version"], offer["rollout"]) == (
            gb.offer_id(text), "0.2.0", "r-1")
        status = gw.status()["updates"]
        assert status["wakes"] >= 1 and status["pulls"] <= pulls + 3, status

        with cloud.admin() as c:
            assert c.post("/api/v1/rollouts/r-1/abort").status_code == 200
        wait_for(lambda: _offers(bike)[-1] == b"", 10, "the offer cleared, well before the pull")
        assert gw.status()["updates"]["offers"] == 0
    finally:
        cloud.server.force_exit = True  # do not wait for the gateway's held request
        cloud.stop()
