"""Downlink by long-poll against the real cloud (uvicorn): with the fixed polls set a minute
apart, a config set in the cloud still reaches a real device's gateway topic, and a revocation
the gateway's list, within seconds: the cloud ends the gateway's held request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gwkit import Device, RunningGateway, gateway_settings, wait_for
from test_gw_real_cloud import RealCloud

from protocol import config as config_codec


def test_configs_and_revocations_arrive_through_the_long_poll(
        home: Path, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    cloud = RealCloud(home).start()
    try:
        cloud.register(home)
        gw = run_gateway(gateway_settings(home, cloud.url, config_poll_s=60.0,
                                          revocation_poll_s=60.0, long_poll_s=25.0))
        bike = devices(home, "bike-1", gw.port)
        bike.send(1)
        wait_for(lambda: bike.acked == 1, 10, "a record acked")
        wait_for(lambda: gw.status()["uplink"]["sent_batches"] >= 1, 10, "the bike known")
        with cloud.admin() as c:
            assert c.put("/api/v1/devices/bike-1/config",
                         json={"settings": {"interval_ms": 900}}).status_code == 200
        wait_for(lambda: bike.configs, 10, "the config at the device, well before the poll")
        body = config_codec.open_envelope(bike.configs[-1],
                                          (home / "keys" / "config.pub").read_bytes())
        assert body["settings"] == {"interval_ms": 900}
        with cloud.admin() as c:
            r = c.post("/api/v1/devices/bike-2/revoke", json={"reason": "stolen"})
            assert r.status_code == 200, r.text
        wait_for(lambda: gw.status()["revocations"]["revoked"] == 1, 10,
                 "the revocation at the gateway, well before the poll")
    finally:
        cloud.server.force_exit = True  # do not wait for the gateway's held request
        cloud.stop()
