"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromedriver, driven
by selenium, nothing downloaded) against the cloud under uvicorn on a real socket, outside dev
mode, filled through the real ingest path with signed, chained batches.

An ops token is made offline (`fleetloop token create --out FILE`) before the cloud starts,
as an operator would; the browser signs in through the /login form with it. Then one browser
session loads every page (overview, device, gateway, customer, cohort, audit), checks that
the plots drew their points inside their plot areas, follows a zoom link, proves that no URL
it requested carried the token, that the session cookie is out of scripts' reach
(HttpOnly) and that no request left the machine, saves a screenshot of each page, signs out
and is sent back to /login."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetloop.stack import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cloud"))
from cloudkit import GatewaySim, b64, b64_public, record_key, signed, signed_state  # noqa: E402

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
INTERNAL_SCHEMES = ("data", "about", "chrome", "chrome-untrusted", "blob")
DAYS = 3  # bike-1: a record a minute for three days, a state every 15 minutes


def fill(stack: Stack, now_ms: int) -> None:
    """Register a gateway, a customer, two devices of hers and a cohort, then deliver the
    devices' data as the gateway does."""
    key = Ed25519PrivateKey.generate()
    with stack.admin() as admin:
        r = admin.post("/api/v1/gateways", json={"id": "gw-1", "public_key": b64_public(key)})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        r = admin.post("/api/v1/customers", json={"id": "acme", "name": "Acme Gyms"})
        assert r.status_code == 201, r.text
        keys = {"bike-1": record_key(1), "mirror-1": record_key(2)}
        for device, product in (("bike-1", "bike"), ("mirror-1", "mirror")):
            r = admin.post("/api/v1/devices", json={"id": device, "product": product,
                                                    "record_key": b64(keys[device]),
                                                    "customer": "acme", "hw_rev": "r2"})
            assert r.status_code == 201, r.text
        r = admin.put("/api/v1/cohorts/bikes", json={"rule": {"product": "bike"}})
        assert r.status_code == 201, r.text
    start = now_ms - DAYS * DAY
    bike = [signed("bike-1", i + 1, keys["bike-1"], t=start + i * MINUTE,
                   power=round(150 + 80 * ((i // 90) % 2) + (i % 7) * 3.5, 1),
                   cadence=70 + (i // 90) % 2 * 20 + i % 5, speed=round(25 + (i % 11) / 2, 1),
                   heart_rate=110 + (i // 30) % 40)
            for i in range(DAYS * DAY // MINUTE)]
    mirror = [signed("mirror-1", i + 1, keys["mirror-1"], t=now_ms - DAY + i * MINUTE,
                     session_active=(i // 60) % 3 == 0, reps=i % 60, brightness=15 + i % 80,
                     room_temp=round(21 + (i % 120) / 100, 2))
              for i in range(DAY // MINUTE)]
    states = [signed_state("bike-1", keys["bike-1"], t=start + h * 15 * MINUTE, why="heartbeat",
                           fw="0.3.0", impl="micropython", heap_low=41_000 - (h % 50) * 40,
                           buffer_bytes=(h % 24) * 512, reconnects=h // 40, rssi=-55 - h % 20)
              for h in range(DAYS * 96)]
    gateway = GatewaySim(httpx.Client(base_url=stack.cloud_url, timeout=60), "gw-1",  # type: ignore[arg-type]
                         key, token)
    for part in range(0, len(bike), 1000):
        assert gateway.push(bike[part:part + 1000]).status_code == 200
    assert gateway.push(mirror, states).status_code == 200


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Chromium is missing: `make chromium` installs Debian's chromium and "
                    "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--no-first-run",
                "--no-default-browser-check", "--window-size=1400,2600",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                # every host name resolves to nothing but the loopback address
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def make_token(stack: Stack, out: Path) -> str:
    """What the server's operator types before starting the cloud: an ops token made offline,
    against the database, written to a 0600 file (never printed)."""
    result = subprocess.run(
        [sys.executable, "-m", "fleetloop", "token", "create", "--home", str(stack.home),
         "--name", "carol", "--role", "ops", "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    token = out.read_text().strip()
    assert token and token not in result.stdout + result.stderr
    assert out.stat().st_mode & 0o077 == 0
    return token


def sign_in(driver: Any, base: str, token: str) -> None:
    """Type the token into the /login form and submit it, as a person would."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    field = wait_for(driver, "input#token")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, 'form[action="/login"] button[type="submit"]').click()
    wait_for(driver, "nav#nav span.who")


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (its performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def wait_for(driver: Any, css: str, timeout: float = 10.0) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


# The points of each chart as the browser parsed them (SVGPointList), with its plot area and
# its size on screen.
PLOTS_JS = """
return Array.from(document.querySelectorAll(arguments[0])).map(fig => {
  const area = fig.querySelector('rect.plot-area');
  const pts = [];
  for (const line of fig.querySelectorAll('polyline.mean'))
    for (let i = 0; i < line.points.numberOfItems; i++) {
      const p = line.points.getItem(i); pts.push([p.x, p.y]);
    }
  const box = fig.querySelector('svg').getBoundingClientRect();
  return {name: fig.dataset.name, points: pts,
          area: [area.x.baseVal.value, area.y.baseVal.value,
                 area.width.baseVal.value, area.height.baseVal.value],
          shown: [box.width, box.height],
          labels: Array.from(fig.querySelectorAll('text.time-label')).map(t => t.textContent)};
});
"""


def plots(driver: Any, css: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in driver.execute_script(PLOTS_JS, css)}


def assert_drawn(plot: dict[str, Any], at_least: int) -> None:
    x, y, w, h = plot["area"]
    points = plot["points"]
    assert len(points) >= at_least, (plot["name"], len(points))
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in points), plot["name"]
    assert plot["shown"][0] > 300 and plot["shown"][1] > 80, plot  # laid out, visible
    assert plot["labels"], plot["name"]  # a time axis


def page_range(driver: Any) -> tuple[int, int]:
    el = wait_for(driver, "#range")
    return int(el.get_attribute("data-from-ms")), int(el.get_attribute("data-to-ms"))


def test_dashboard_in_chromium(stack: Stack, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    token = make_token(stack, tmp_path / "carol.token")
    stack.dev = False
    stack.start_cloud()
    fill(stack, int(time.time() * 1000))
    base = stack.cloud_url
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # Without a session every page sends the browser to the sign-in form.
    browser.get(base + "/")
    wait_for(browser, "input#token")
    assert urlsplit(browser.current_url).path == "/login"
    sign_in(browser, base, token)
    assert urlsplit(browser.current_url).path == "/"
    who = browser.find_element(By.CSS_SELECTOR, "nav#nav span.who")
    assert "carol" in who.text and "ops" in who.text
    # The session cookie is there, HttpOnly: no script on the page can read it.
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["fleetloop_session"]["httpOnly"] is True
    assert cookies["fleetloop_session"]["sameSite"] == "Strict"
    assert "fleetloop_session" not in browser.execute_script("return document.cookie")
    assert token not in browser.page_source
    wait_for(browser, "table#devices")
    rows = browser.find_elements(By.CSS_SELECTOR, "table#devices tr[data-device]")
    assert [r.get_attribute("data-device") for r in rows] == ["bike-1", "mirror-1"]
    assert "2 devices (2 online, 0 offline)" in browser.find_element(By.CSS_SELECTOR, "p.meta").text
    for href in ("/customers", "/cohorts", "/audit"):  # the overview links to every page
        assert browser.find_elements(By.CSS_SELECTOR, f'nav#nav a[href="{href}"]'), href
    assert "0.3.0" in browser.find_element(By.ID, "firmware").text
    # the stylesheet loaded under the page's Content-Security-Policy
    assert browser.execute_script(
        "return getComputedStyle(document.querySelector('table#devices')).borderCollapse"
    ) == "collapse"
    browser.save_screenshot(str(shots / "overview.png"))

    browser.find_element(By.CSS_SELECTOR, 'table#devices a[href="/devices/bike-1"]').click()
    wait_for(browser, "h1#device")
    first = page_range(browser)
    assert first[1] - first[0] == DAY
    metrics = plots(browser, "figure.metric")
    assert list(metrics) == ["cadence", "power", "speed", "heart_rate"]
    for plot in metrics.values():
        assert_drawn(plot, at_least=200)  # a day of minutes in ~300 buckets
    vitals = plots(browser, "figure.vital")
    assert list(vitals) == ["heap_low", "buffer_bytes", "reconnects", "rssi"]
    for plot in vitals.values():
        assert_drawn(plot, at_least=50)  # a state every 15 minutes
    browser.save_screenshot(str(shots / "device.png"))

    browser.find_element(By.CSS_SELECTOR, 'a[data-range="zoom-in"]').click()
    wait_for(browser, "h1#device")
    zoomed = page_range(browser)
    assert zoomed != first and zoomed[1] - zoomed[0] == DAY // 2
    assert zoomed[0] + zoomed[1] == first[0] + first[1]  # around the same centre
    assert_drawn(plots(browser, "figure.metric")["power"], at_least=200)
    browser.save_screenshot(str(shots / "device-zoomed.png"))

    browser.find_element(By.CSS_SELECTOR, 'a[data-range="7 d"]').click()
    wait_for(browser, "h1#device")
    week = page_range(browser)
    assert week[1] - week[0] == 7 * DAY
    assert_drawn(plots(browser, "figure.metric")["power"], at_least=100)  # 3 of 7 days
    browser.save_screenshot(str(shots / "device-week.png"))

    browser.find_element(By.CSS_SELECTOR, 'h1#device a[href="/gateways/gw-1"]').click()
    wait_for(browser, "h1#gateway")
    devices = browser.find_element(By.ID, "gateway-devices").text
    assert "bike-1" in devices and "mirror-1" in devices
    browser.save_screenshot(str(shots / "gateway.png"))

    browser.find_element(By.CSS_SELECTOR, 'table#gateway-devices a[href="/devices/mirror-1"]').click()
    wait_for(browser, "h1#device")
    mirror = plots(browser, "figure.metric")
    assert list(mirror) == ["session_active", "reps", "brightness", "room_temp"]
    assert_drawn(mirror["room_temp"], at_least=200)
    browser.save_screenshot(str(shots / "device-mirror.png"))

    # The customer: both products, and a plot over them.
    browser.find_element(By.CSS_SELECTOR, 'nav#nav a[href="/customers"]').click()
    wait_for(browser, "table#customer-list")
    browser.find_element(By.CSS_SELECTOR, 'table#customer-list a[href="/customers/acme"]').click()
    wait_for(browser, "h1#customer")
    products = browser.find_element(By.ID, "products").text
    assert "bike-1" in products and "mirror-1" in products and "online" in products
    group = plots(browser, "figure.group")
    assert list(group) == ["cadence"]  # the first metric its products sent
    assert_drawn(group["cadence"], at_least=200)
    browser.find_element(By.CSS_SELECTOR, 'a[data-metric="room_temp"]').click()
    wait_for(browser, "h1#customer")
    assert_drawn(plots(browser, "figure.group")["room_temp"], at_least=200)  # the mirror's
    browser.save_screenshot(str(shots / "customer.png"))

    # The cohort: its rule, its member, a plot.
    browser.find_element(By.CSS_SELECTOR, 'nav#nav a[href="/cohorts"]').click()
    wait_for(browser, "table#cohort-list")
    browser.find_element(By.CSS_SELECTOR, 'table#cohort-list a[href="/cohorts/bikes"]').click()
    wait_for(browser, "h1#cohort")
    assert "product" in browser.find_element(By.ID, "definition").text
    members = browser.find_element(By.ID, "members").text
    assert "bike-1" in members and "mirror-1" not in members
    assert_drawn(plots(browser, "figure.group")["cadence"], at_least=200)
    browser.save_screenshot(str(shots / "cohort.png"))

    # The audit log: the setup's changes, newest first, filterable by plain links.
    browser.find_element(By.CSS_SELECTOR, 'nav#nav a[href="/audit"]').click()
    wait_for(browser, "table#audit-log")
    log = browser.find_element(By.ID, "audit-log").text
    for action in ("cohort.put", "device.create", "customer.create", "gateway.register",
                   "token.create"):
        assert action in log, action
    browser.find_element(By.CSS_SELECTOR, 'a[data-filter="action"][href*="device.create"]').click()
    wait_for(browser, "table#audit-log")
    rows = browser.find_elements(By.CSS_SELECTOR, "table#audit-log tbody tr")
    assert len(rows) == 2 and all("device.create" in r.text for r in rows)
    browser.save_screenshot(str(shots / "audit.png"))

    # Every request the browser made went to this machine's cloud, none carried the token.
    urls = requested_urls(browser)
    assert not [u for u in urls if token in u]
    assert "fleetloop_session" not in " ".join(urls)
    # Chromium's own pages (its new-tab page at start) load from inside the browser.
    internal = [u for u in urls if urlsplit(u).scheme in INTERNAL_SCHEMES]
    network = [u for u in urls if u not in internal]
    assert len(network) >= 14, urls  # a dozen pages and the stylesheet at least
    assert all(urlsplit(u).scheme in ("http", "https", "ws", "wss") for u in network), network
    foreign = [u for u in network if urlsplit(u).hostname != "127.0.0.1"]
    assert not foreign, foreign
    assert any(u.endswith("/dashboard.css") for u in network)
    # Nothing was refused by the Content-Security-Policy (a favicon the cloud lacks may 404).
    console = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m], console

    for name in ("overview", "device", "device-zoomed", "device-week", "gateway", "device-mirror",
                 "customer", "cohort", "audit"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name

    # Signing out ends the session: the next page is the sign-in form again.
    browser.find_element(By.CSS_SELECTOR, "form#signout button[type='submit']").click()
    wait_for(browser, "input#token")
    assert urlsplit(browser.current_url).path == "/login"
    assert "fleetloop_session" not in {c["name"] for c in browser.get_cookies()}
    browser.get(base + "/customers/acme")
    wait_for(browser, "input#token")
    assert urlsplit(browser.current_url).path == "/login"
    assert not [u for u in requested_urls(browser) if token in u]
    print(f"screenshots in {shots}")
    if os.environ.get("KEEP_SCREENSHOTS"):  # a directory to copy them to, for a look
        shutil.copytree(shots, os.environ["KEEP_SCREENSHOTS"], dirs_exist_ok=True)
