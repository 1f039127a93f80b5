"""The local status endpoint technicians' `diag` reads, and the run file that points to it.

GET /status -> JSON built by a `collect()` callable the composition root provides; the server
knows nothing about the parts. Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

log = logging.getLogger("fleetloop.gateway.status")

Collect = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class RunInfo:
    pid: int
    mqtt_port: int
    status_url: str

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)) + "\n")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> RunInfo:
        obj = json.loads(path.read_text())
        return cls(pid=int(obj["pid"]), mqtt_port=int(obj["mqtt_port"]),
                   status_url=str(obj["status_url"]))


def _handler(collect: Collect) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleetloop-gateway"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] not in ("/status", "/status/"):
                self._send(404, {"error": "not found; try GET /status"})
                return
            try:
                body = collect()
            except GatewayError as exc:
                self._send(503, {"error": str(exc)})
                return
            self._send(200, body)

        def _send(self, code: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj, sort_keys=True).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("status: " + format, *args)

    return Handler


class StatusServer:
    def __init__(self, port: int, collect: Collect, host: str = "127.0.0.1") -> None:
        self._host = host
        self._port = port
        self._collect = collect
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/status"

    def start(self) -> None:
        try:
            server = ThreadingHTTPServer((self._host, self._port), _handler(self._collect))
        except OSError as exc:
            raise GatewayError(f"status port {self._port} is not free: {exc.strerror}") from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
