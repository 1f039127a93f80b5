"""A policy's page in a real browser, the way the dashboard's browser test does it (its
browser fixture and helpers: headless Chromium, nothing downloaded, the cloud under uvicorn
outside dev mode, an ops token made offline, a sign-in through /login). The cloud judges the
policy by itself (its ticker, once the record clock passes the window's end); the navigation
leads to the list and the policy's page, whose chart draws the lift's interval as a bar
inside its plot area on the right side of the zero line for the decision it shows."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cloud.db import open_database
from cloud.loop.activity import DAY_MS, WEEK_MS
from fleetloop.fleet.play import Player
from fleetloop.stack import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
import test_dashboard_browser as chromium  # noqa: E402

pytestmark = pytest.mark.e2e
browser = chromium.browser  # the fixture
END = 1_780_000_000_000
START = END - 12 * WEEK_MS

LIFT_JS = """
const fig = document.querySelector('figure[data-name="lift"]');
const area = fig.querySelector('rect.plot-area');
const zero = fig.querySelector('line.zero');
return {area: [area.x.baseVal.value, area.width.baseVal.value],
        zero: zero.x1.baseVal.value,
        rows: Array.from(fig.querySelectorAll('g.evaluation')).map(g => {
          const bar = g.querySelector('rect.interval');
          const tick = g.querySelector('line.estimate');
          return {decision: g.dataset.decision, x: bar.x.baseVal.value,
                  w: bar.width.baseVal.value, lift: tick.x1.baseVal.value};
        }),
        shown: fig.querySelector('svg').getBoundingClientRect().width};
"""


def test_policy_page_in_chromium(stack: Stack, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    stack.keygen([])
    token = chromium.make_token(stack, tmp_path / "carol.token")
    stack.start_cloud()
    db = open_database(stack.home / "cloud" / "cloud.db")
    with db.connection() as store:
        player = Player(store, 3, [("bike", 30)], START, END)
        player.play_until(START + 6 * WEEK_MS)
        with stack.admin() as admin:
            r = admin.post("/api/v1/policies", json={
                "name": "push-power", "product": "bike", "change": {"target_power_w": 2000},
                "outcome": {"kpi": "rides_per_week"}, "window_days": 14, "max_extensions": 0,
                "seed": 2})
            assert r.status_code == 201, r.text
            policy = r.json()
            player.play_until(policy["window_end_ms"] + DAY_MS)
            player.advance_clock(policy["window_end_ms"] + DAY_MS)  # heartbeats: all heard
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the server's ticker judges it by itself
                got = admin.get(f"/api/v1/policies/{policy['id']}").json()
                if got["state"] != "running":
                    break
                time.sleep(0.2)
    db.close()
    assert got["state"] == "reverted", got
    base = stack.cloud_url
    chromium.sign_in(browser, base, token)
    browser.find_element(By.CSS_SELECTOR, 'nav#nav a[href="/policies"]').click()
    chromium.wait_for(browser, "table#policy-list")
    browser.find_element(By.CSS_SELECTOR, 'table#policy-list a[href="/policies/1"]').click()
    heading = chromium.wait_for(browser, "h1#policy")
    assert heading.get_attribute("data-state") == "reverted"
    chart = browser.execute_script(LIFT_JS)
    x, width = chart["area"]
    assert chart["shown"] > 300 and x <= chart["zero"] <= x + width
    [row] = chart["rows"]
    assert row["decision"] == "revert"
    assert x <= row["x"] and row["x"] + row["w"] <= x + width + 0.1  # inside the plot area
    ev = got["evaluations"][0]
    # the bar sits where the numbers say: left of zero exactly when the interval is below it
    assert (row["x"] + row["w"] < chart["zero"]) == (ev["ci_high"] < 0)
    assert (row["x"] > chart["zero"]) == (ev["ci_low"] > 0)
    assert row["x"] <= row["lift"] <= row["x"] + row["w"]
    trail = browser.find_element(By.ID, "policy-audit").text
    assert "policy.revert" in trail and "system" in trail and "policy.create" in trail
    shot = Path(__import__("os").environ.get("POLICY_SHOT", tmp_path / "policy.png"))
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    urls = chromium.requested_urls(browser)
    assert not [u for u in urls if token in u]
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in urls
               if urlsplit(u).scheme in ("http", "https"))
