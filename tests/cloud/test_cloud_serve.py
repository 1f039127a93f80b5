"""The real thing: `python -m cloud.cli serve --port 0` runs uvicorn, which prints the port it
got; /healthz answers; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def test_serve_on_port_zero_prints_the_real_port_and_answers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_")}
    log_path = tmp_path / "cloud.log"
    lines: list[str] = []
    port: list[int] = []
    seen = threading.Event()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloud.cli", "serve", "--home", str(tmp_path / "home"),
             "--port", "0", "--dev"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                lines.append(line)
                m = RUNNING.search(line)
                if m and not port:
                    port.append(int(m.group(1)))
                    seen.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            assert seen.wait(20), "no 'Uvicorn running on' line:\n" + "".join(lines)
            assert port[0] != 0
            url = f"http://127.0.0.1:{port[0]}"
            deadline = time.monotonic() + 10
            while True:
                try:
                    r = httpx.get(f"{url}/healthz", timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            assert r.status_code == 200 and r.json() == {"ok": True}
            # dev mode: the dashboard is open; the sign-in page answers too
            assert httpx.get(f"{url}/", timeout=2).status_code == 200
            assert httpx.get(f"{url}/login", timeout=2).status_code == 200
            assert (tmp_path / "home" / "cloud" / "cloud.db").exists()
            proc.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught
            assert proc.wait(10) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            reader.join(5)
    text = "".join(lines)
    assert "Application shutdown complete" in text
    assert '"GET /login HTTP/1.1" 200' in text
