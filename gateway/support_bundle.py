"""`diag --bundle FILE`: what a technician hands over, without any cloud.

One archive (.tar.gz, or .zip by its name) holding the status (live or read from the files),
the gateway's recent log, the broker's log tail, the configuration (settings, Mosquitto
config and ACL, run.json), the versions of what runs, and dumps of gateway.db's tables
(through sqlite-utils; blobs as their size and sha256 only: batch bodies are device data).

Never in it: keys, tokens, the technician's credential. Every text that goes in passes
`Redactor`, which removes every secret of this home it knows by value (the cloud token, the
technician's token, every private key's PEM body) and anything shaped like one (a PEM private
key block, a bearer token, a `token=` value, a password in a URL), so a secret that slipped
into a log by mistake still stays out.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import platform
import re
import sqlite3
import subprocess
import tarfile
import time
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gateway import diag_offline, logfile, tech_credential
from gateway.broker_config import find_mosquitto
from gateway.errors import DiagError, GatewayError
from gateway.settings import Settings
from gateway.status import version
from gateway.tech_identity import TechIdentity

REDACTED = "[REDACTED]"
LOG_LINES = 5000
BROKER_LOG_LINES = 500
TABLE_ROWS = 1000  # the newest rows of each table
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                          re.S)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@")
_TOKEN_VALUE = re.compile(r"(?i)((?:token|secret|password|passwd|api[_-]?key)[\"']?\s*[=:]\s*[\"']?)"
                          r"[^\s\"',;]+")


@dataclass(frozen=True)
class Redactor:
    secrets: tuple[str, ...]  # known values, longest first

    @classmethod
    def for_home(cls, s: Settings) -> Redactor:
        found: set[str] = set()
        for path in (s.token_path, tech_credential.token_path(s.gateway_dir)):
            try:
                value = path.read_text().strip()
            except OSError:
                continue
            if len(value) >= 8:
                found.add(value)
        tech = TechIdentity.under(s.home, s.gateway_id)
        for key in [*(s.home / "keys").rglob("*.pem"), *(s.home / "keys").rglob("*.key"),
                    *(s.home / "keys").rglob("*.der"), tech.key]:
            found.update(_key_secrets(key))
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def text(self, text: str) -> str:
        for value in self.secrets:
            text = text.replace(value, REDACTED)
        text = _PEM_PRIVATE.sub(REDACTED, text)
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", text)
        return _TOKEN_VALUE.sub(lambda m: m.group(1) + REDACTED, text)


def _key_secrets(path: Path) -> set[str]:
    """The strings that would reveal a private key file: each line of a PEM body (any one of
    them is part of the key), and the base64 and hex of a raw or DER key."""
    try:
        data = path.read_bytes()
    except OSError:
        return set()
    if data.startswith(b"-----BEGIN"):
        if b"PRIVATE KEY" not in data:
            return set()
        return {ln for ln in data.decode(errors="replace").splitlines()
                if ln and not ln.startswith("-----") and len(ln) >= 16}
    if path.suffix == ".der" and not path.name.startswith("key"):
        return set()  # certificates in DER: public
    return {base64.b64encode(data).decode(), data.hex()} if len(data) >= 16 else set()


def _settings(s: Settings) -> dict[str, Any]:
    return {f.name: str(getattr(s, f.name)) if isinstance(getattr(s, f.name), Path)
            else getattr(s, f.name) for f in fields(s)}


def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else ""


def versions() -> dict[str, Any]:
    from importlib import metadata

    libs: dict[str, str | None] = {}
    for name in ("paho-mqtt", "aiomqtt", "cryptography", "httpx", "sqlite-utils", "typer",
                 "rich", "prometheus-client"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    try:
        mosquitto = _run([find_mosquitto(), "-h"])
    except GatewayError as exc:
        mosquitto = str(exc)
    return {"fleetloop": version(), "python": platform.python_version(),
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
            "mosquitto": mosquitto, "libraries": libs}


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    return value


def table_dumps(db_path: Path) -> dict[str, str]:
    """{table name: JSON lines of its newest rows}; {} when there is no database."""
    if not db_path.is_file():
        return {}
    out: dict[str, str] = {}
    with diag_offline.read_only(db_path) as db:
        for name in db.table_names():
            table = db.table(name)
            order = None if "WITHOUT ROWID" in table.schema.upper() else "rowid desc"
            try:
                rows = table.rows_where(order_by=order, limit=TABLE_ROWS)
                lines = [json.dumps({k: _cell(v) for k, v in r.items()}, sort_keys=True)
                         for r in rows]
            except sqlite3.Error as exc:
                lines = [json.dumps({"error": str(exc)})]
            out[name] = "\n".join([json.dumps({"table": name, "rows": table.count,
                                               "shown": len(lines)}), *lines]) + "\n"
    return out


def contents(s: Settings, status: dict[str, Any]) -> dict[str, str]:
    """{path in the bundle: text}, every text redacted."""
    redact = Redactor.for_home(s)
    broker = s.broker_dir
    files: dict[str, str] = {
        "status.json": json.dumps(status, indent=2, sort_keys=True, default=str),
        "versions.json": json.dumps(versions(), indent=2, sort_keys=True),
        "config/settings.json": json.dumps(_settings(s), indent=2, sort_keys=True),
        "logs/gateway.log": "\n".join(logfile.tail(logfile.path(s.gateway_dir), LOG_LINES)),
        "logs/mosquitto.log": "\n".join(logfile.tail(broker / "mosquitto.log",
                                                      BROKER_LOG_LINES)),
    }
    for name, path in (("config/mosquitto.conf", broker / "mosquitto.conf"),
                       ("config/acl", broker / "acl"), ("config/run.json", s.run_file)):
        try:
            files[name] = path.read_text(errors="replace")
        except OSError:
            continue
    try:
        for table, text in table_dumps(s.db_path).items():
            files[f"tables/{table}.jsonl"] = text
    except sqlite3.Error as exc:
        files["tables/error.txt"] = f"cannot read {s.db_path}: {exc}\n"
    return {name: redact.text(text) for name, text in files.items()}


def write(path: Path, s: Settings, status: dict[str, Any]) -> None:
    """The archive at `path` (.zip by its suffix, else .tar.gz); DiagError if unwritable."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    top = f"fleetloop-support-{s.gateway_id}-{stamp}"
    files = contents(s, status)
    files["README.txt"] = (f"Support bundle of gateway {s.gateway_id}, made {stamp} by "
                           f"`fleetloop gateway diag --bundle`. Secrets are redacted as "
                           f"{REDACTED}; blobs are shown as their size and sha256.\n")
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, text in sorted(files.items()):
                    zf.writestr(f"{top}/{name}", text)
            return
        with tarfile.open(path, "w:gz") as tf:
            for name, text in sorted(files.items()):
                data = text.encode()
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
                tf.addfile(info, io.BytesIO(data))
    except OSError as exc:
        raise DiagError(f"cannot write the bundle {path}: {exc.strerror or exc}") from exc

