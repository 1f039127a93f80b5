"""The rollout pages in a real browser, the way the dashboard's browser test does it (its
browser fixture and helpers: headless Chromium, nothing downloaded, the cloud under uvicorn
outside dev mode, an ops token made offline, a sign-in through /login): the rollouts list
links the rollout, whose page draws one stacked bar per wave inside its plot area, split by
the devices' words, and lists the devices with their words and reasons."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cloudkit import GatewaySim, b64, b64_public, record_key, signed_state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from updatekit import BUNDLE, full, offer_id

from fleetloop.stack import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
import test_dashboard_browser as chromium  # noqa: E402

pytestmark = pytest.mark.e2e
browser = chromium.browser  # the fixture

# Each segment of each wave's bar as the browser laid it out, with the bar's plot area.
BARS_JS = """
return Array.from(document.querySelectorAll('svg.waves g.wave')).map(g => {
  const area = g.querySelector('rect.plot-area');
  return {wave: g.dataset.wave, size: +g.dataset.size,
          area: [area.x.baseVal.value, area.width.baseVal.value],
          segs: Array.from(g.querySelectorAll('rect.seg')).map(r => ({
            word: r.dataset.word, count: +r.dataset.count,
            x: r.x.baseVal.value, w: r.width.baseVal.value}))};
});
"""


def fill(stack: Stack) -> None:
    """A gateway and three bikes heard from, their 0.2.0 bundle, a rollout of it in two
    waves, the gateway's pull, and the first wave's device downloading."""
    key = Ed25519PrivateKey.generate()
    keys = {f"bike-{n}": record_key(n) for n in (1, 2, 3)}
    release = load_pem_private_key((stack.home / "keys" / "release.key.pem").read_bytes(), None)
    data = full(release)  # type: ignore[arg-type]
    with stack.admin() as admin:
        token = admin.post("/api/v1/gateways", json={"id": "gw-1",
                                                     "public_key": b64_public(key)}).json()["token"]
        for device, k in keys.items():
            assert admin.post("/api/v1/devices", json={"id": device, "product": "bike",
                                                       "record_key": b64(k)}).status_code == 201
        http = httpx.Client(base_url=stack.cloud_url, timeout=30)
        gateway = GatewaySim(http, "gw-1", key, token)  # type: ignore[arg-type]
        now = int(time.time() * 1000)
        assert gateway.push(states=[signed_state(d, k, t=now, fw="0.1.0", heap_low=30000)
                                    for d, k in keys.items()]).status_code == 200
        assert admin.post("/api/v1/bundles", content=data, headers=BUNDLE).status_code == 201
        plan = admin.post("/api/v1/rollouts", json={"bundle": "bike-0.2.0", "waves": [33, 100],
                                                    "devices": sorted(keys)}).json()
        first = [d["device"] for d in plan["devices"] if d["wave"] == 1][0]
        http.get("/api/v1/gateway/updates", headers={"Authorization": f"Bearer {token}"})
        assert gateway.push(states=[signed_state(
            first, keys[first], t=now + 1000, fw="0.1.0", why="update", update="downloading",
            update_id=offer_id(data), update_version="0.2.0", update_progress=30)]
        ).status_code == 200


def test_rollout_pages_in_chromium(stack: Stack, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    stack.keygen([])
    token = chromium.make_token(stack, tmp_path / "carol.token")
    stack.start_cloud()
    fill(stack)
    base = stack.cloud_url
    chromium.sign_in(browser, base, token)
    browser.find_element(By.CSS_SELECTOR, 'nav#nav a[href="/rollouts"]').click()
    chromium.wait_for(browser, "table#rollout-list")
    browser.find_element(By.CSS_SELECTOR, 'table#rollout-list a[href="/rollouts/r-1"]').click()
    heading = chromium.wait_for(browser, "h1#rollout")
    assert heading.get_attribute("data-state") == "running"
    bars = browser.execute_script(BARS_JS)
    assert [(b["wave"], b["size"]) for b in bars] == [("1", 1), ("2", 2)]
    for bar in bars:  # the segments fill the bar left to right, inside its plot area
        x, width = bar["area"]
        assert sum(s["count"] for s in bar["segs"]) == bar["size"]
        assert abs(sum(s["w"] for s in bar["segs"]) - width) < 0.5
        assert all(x - 0.1 <= s["x"] and s["x"] + s["w"] <= x + width + 0.1 for s in bar["segs"])
    assert [s["word"] for s in bars[0]["segs"]] == ["downloading"]
    assert [s["word"] for s in bars[1]["segs"]] == ["pending"]
    devices = browser.find_element(By.ID, "rollout-devices").text
    assert "downloading" in devices and "30%" in devices and "pending" in devices
    shot = tmp_path / "rollout.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    urls = chromium.requested_urls(browser)
    assert not [u for u in urls if token in u]
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in urls
               if urlsplit(u).scheme in ("http", "https"))
