"""The local status endpoint technicians' `diag` reads, and the run file that points to it.

GET /status -> JSON built by a `collect()` callable the composition root provides; the server
knows nothing about the parts. GET /metrics -> the same, as Prometheus text (gateway.metrics).
Bound to 127.0.0.1 only, and both answer 401 without the technician's credential
(`Authorization: Bearer <token>`, the token in <gateway dir>/technician.token, gateway.
tech_credential): a loopback port is reachable by every local user, the file only by the
gateway's own.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

from gateway import metrics, tech_credential
from gateway.errors import GatewayError

log = logging.getLogger("fleetloop.gateway.status")

Collect = Callable[[], dict[str, Any]]


def version() -> str:
    """The installed fleetloop's version (the status and diag both show it)."""
    try:
        return metadata.version("fleetloop")
    except metadata.PackageNotFoundError:
        return "unknown"


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


def _handler(collect: Collect, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleetloop-gateway"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?")[0].rstrip("/")
            if path not in ("/status", "/metrics"):
                self._send(404, {"error": "not found; try GET /status or GET /metrics"})
                return
            if not tech_credential.allowed(self.headers.get("Authorization"), token):
                self._send(401, {"error": "the technician's credential is required: "
                                          "Authorization: Bearer <the token in "
                                          f"{tech_credential.FILE_NAME}>"},
                           {"WWW-Authenticate": 'Bearer realm="fleetloop-gateway"'})
                return
            try:
                if path == "/metrics":
                    self._write(200, metrics.render(collect), metrics.CONTENT_TYPE)
                else:
                    self._send(200, collect())
            except GatewayError as exc:
                self._send(503, {"error": str(exc)})

        def _send(self, code: int, obj: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            self._write(code, json.dumps(obj, sort_keys=True).encode(), "application/json",
                        headers)

        def _write(self, code: int, data: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("status: " + format, *args)

    return Handler


class StatusServer:
    def __init__(self, port: int, collect: Collect, token: str, host: str = "127.0.0.1") -> None:
        self._host = host
        self._port = port
        self._collect = collect
        self._token = token
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/status"

    def start(self) -> None:
        try:
            server = ThreadingHTTPServer((self._host, self._port),
                                         _handler(self._collect, self._token))
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
