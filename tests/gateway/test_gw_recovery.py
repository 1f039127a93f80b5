"""Back within seconds after a cloud outage: while uploads back off (here toward a 30 s
ceiling), the gateway probes the cloud's health about once a second and sends its backlog as
soon as the real cloud (uvicorn) answers again, long before the backoff would have ended."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gwkit import GATEWAY, Device, RunningGateway, gateway_settings, spool_records, wait_for
from test_gw_real_cloud import RealCloud

from gateway.backoff import Backoff
from gateway.keys import GatewayKeys
from gateway.uplink import Uplink


def test_the_backlog_goes_within_seconds_of_the_clouds_return(
        home: Path, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    cloud = RealCloud(home)  # nothing listens on its port yet: the cloud is down
    gw = run_gateway(gateway_settings(home, cloud.url, retry_min_s=20.0, retry_max_s=30.0))
    bike = devices(home, "bike-1", gw.port)
    for seq in range(1, 101):
        bike.client.publish("fleet/bike-1/telemetry", bike.record(seq), qos=1)
    wait_for(lambda: bike.acked == 100, 20, "100 acked")
    # The first failed upload set a retry 10-20 s away.
    wait_for(lambda: (gw.status()["uplink"]["next_try_s"] or 0) > 8, 20, "a long backoff")
    cloud.start()
    try:
        cloud.register(home)
        back = time.monotonic()
        wait_for(lambda: len(cloud.seqs("bike-1")) == 100, 10, "the backlog within 10 s")
        assert time.monotonic() - back < 10
        up = gw.status()["uplink"]
        assert up["probes"] >= 1 and up["latency_ms"] is not None and up["next_try_s"] is None
    finally:
        gw.stop()
        cloud.stop()


def test_no_probing_while_the_cloud_refuses_for_another_reason(home: Path) -> None:
    """A wrong token is no outage: the uplink waits its backoff without asking /healthz."""
    cloud = RealCloud(home).start()
    try:
        cloud.register(home)
        (home / "gateways" / GATEWAY / "token").write_text("flt_wrong-token")
        store = spool_records(home, "bike-2", 10)
        uplink = Uplink(store, GATEWAY, cloud.url, home / "gateways" / GATEWAY / "token",
                        Backoff(1.5, 1.5, random.Random(1)),
                        GatewayKeys.under(home, GATEWAY).load_batch_key(), probe_s=0.1)
        stop = threading.Event()
        worker = threading.Thread(target=uplink.run, args=(stop,))
        worker.start()
        wait_for(lambda: uplink.status()["failures"] >= 1, 10, "a refusal")
        time.sleep(0.5)
        stop.set()
        worker.join(10)
        assert uplink.status()["probes"] == 0 and "401" in uplink.status()["last_error"]
        store.close()
    finally:
        cloud.stop()
