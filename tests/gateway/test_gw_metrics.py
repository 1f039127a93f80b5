"""The status endpoint and its /metrics on a real gateway: loopback only, refused (401)
without the technician's credential or with a wrong one, Prometheus text with it; the
credential is a 0600 file under the gateway's home, kept across restarts."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import httpx
from gwkit import FakeCloud, RunningGateway, gateway_settings, wait_for
from prometheus_client.parser import text_string_to_metric_families

from gateway import tech_credential

GatewayStarter = Callable[..., RunningGateway]


def test_status_and_metrics_refuse_requests_without_the_technicians_credential(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    path = tech_credential.token_path(gw.settings.gateway_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    base = gw.settings.status_url.rsplit("/", 1)[0]
    assert base.startswith("http://127.0.0.1:")
    for endpoint in ("/status", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            resp = httpx.get(base + endpoint, headers=headers, timeout=5)
            assert resp.status_code == 401, (endpoint, headers)
            assert token not in resp.text
    resp = httpx.get(base + "/status", headers=tech_credential.header(token), timeout=5)
    assert resp.status_code == 200 and resp.json()["gateway"] == "gw-1"

    resp = httpx.get(base + "/metrics", headers=tech_credential.header(token), timeout=5)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    values = {s.name: s.value for f in text_string_to_metric_families(resp.text)
              for s in f.samples}
    assert values["fleetloop_gateway_broker_up"] == 1.0
    assert values["fleetloop_gateway_broker_restarts_total"] == 0.0
    assert values["fleetloop_gateway_devices_online"] == 0.0
    for name in ("records_ingested_total", "messages_rejected_total", "spool_batches",
                 "uplink_failures_total"):
        assert "fleetloop_gateway_" + name in values


def test_the_credential_is_kept_across_restarts(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter) -> None:
    settings = gateway_settings(home, cloud.url)
    gw = run_gateway(settings)
    path = tech_credential.token_path(settings.gateway_dir)
    first = path.read_text()
    gw.stop()
    wait_for(lambda: not settings.run_file.exists(), 10, "clean stop")
    run_gateway(settings)
    assert path.read_text() == first  # a site's scrape config keeps working
