"""Revoked devices: learn them from the cloud, refuse them now, and at the broker once the
device CA's CRL arrives.

Every `interval_s`: GET /api/v1/revocations (the revoked device ids: ingest refuses their
messages from then on, "device revoked") and GET /api/v1/gateway/crl (the newest CRL the
factory signed with the device CA key). A CRL is used only when it verifies against this
gateway's copy of the device CA certificate (issuer and signature), is numbered above the one
in use and has not expired; it is then written next to the broker config (`crlfile`) and the
broker is restarted (Mosquitto 2.0 reads a CRL only at start), after which a revoked
certificate gets no CONNACK. The gateway never holds the CA key: it cannot make or alter a CRL.

Between polls the gateway holds a long-poll open (gateway.longpoll, with the revocations tag
the cloud gave it before its last poll): a revocation or a new CRL in the cloud ends the wait,
and the gateway polls at once. Without it (off, an older cloud, the cloud away) it polls every
`interval_s`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from gateway.errors import GatewayError
from gateway.longpoll import LongPoll, LongPollError, NoLongPoll
from gateway.uplink import read_token
from protocol.topics import valid_device_id

log = logging.getLogger("fleetloop.gateway.revocation")

REVOCATIONS_PATH = "/api/v1/revocations"
CRL_PATH = "/api/v1/gateway/crl"


class RevocationError(GatewayError):
    """One poll failed, or a CRL was refused; what is in use stays in use."""


def crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        value = crl.extensions.get_extension_for_oid(ExtensionOID.CRL_NUMBER).value
    except x509.ExtensionNotFound as exc:
        raise RevocationError("CRL without a CRL number") from exc
    assert isinstance(value, x509.CRLNumber)
    return int(value.crl_number)


def verify_crl(data: bytes, ca_cert: Path, now: dt.datetime | None = None
               ) -> x509.CertificateRevocationList:
    """The CRL (DER or PEM) when the device CA signed it and it is current; RevocationError
    otherwise."""
    try:
        crl = (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----")
               else x509.load_der_x509_crl(data))
    except ValueError as exc:
        raise RevocationError("not an X.509 CRL") from exc
    try:
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise RevocationError(f"cannot read the device CA certificate {ca_cert}: {exc}") from exc
    key = ca.public_key()
    if crl.issuer != ca.subject or not isinstance(key, ec.EllipticCurvePublicKey) \
            or not crl.is_signature_valid(key):
        raise RevocationError("CRL not signed by the device CA")
    now = now or dt.datetime.now(dt.UTC)
    if crl.next_update_utc is not None and crl.next_update_utc <= now:
        raise RevocationError("CRL expired: the factory must sign a new one (fleetloop fw crl)")
    return crl


class Revocations:
    def __init__(self, cloud_url: str, token_path: Path, ca_cert: Path, crl_path: Path,
                 restart_broker: Callable[[], None], interval_s: float = 30.0,
                 timeout_s: float = 10.0, long_poll: LongPoll | None = None) -> None:
        self._long_poll = long_poll
        self._base = cloud_url.rstrip("/")
        self._token_path = token_path
        self._ca_cert = ca_cert
        self._crl_path = crl_path
        self._restart_broker = restart_broker
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._revoked: frozenset[str] = frozenset()
        self._number: int | None = None  # the CRL in use
        self._last_error: str | None = None

    def is_revoked(self, device: str) -> bool:
        return device in self._revoked  # a frozenset swapped whole: no lock needed

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"revoked": len(self._revoked), "crl_number": self._number,
                    "last_error": self._last_error}

    def load(self) -> None:
        """Take the number of the CRL already in use (written by an earlier run)."""
        try:
            self._number = crl_number(verify_crl(self._crl_path.read_bytes(), self._ca_cert))
        except (OSError, RevocationError):
            self._number = None

    def run(self, stop: threading.Event) -> None:
        self.load()
        with httpx.Client(timeout=self._timeout_s) as http:
            while True:
                tag = self._current_tag(stop)  # before the poll: a change after it ends the wait
                try:
                    self.poll_once(http)
                    error = None
                except RevocationError as exc:
                    error = str(exc)
                self._note(error)
                if tag is not None and self._wait_for_change(tag, stop):
                    continue
                if stop.wait(self._interval_s):
                    return

    def _current_tag(self, stop: threading.Event) -> str | None:
        """The cloud's revocations tag now (None when the long-poll is off or fails)."""
        if self._long_poll is None or not self._long_poll.enabled:
            return None
        try:
            answer = self._long_poll.ask({"revocations": ""}, stop, hold=False)
        except LongPollError as exc:
            self._long_poll_failed(exc)
            return None
        tag = None if answer is None else answer.get("revocations")
        return tag if isinstance(tag, str) else None

    def _wait_for_change(self, tag: str, stop: threading.Event) -> bool:
        assert self._long_poll is not None
        try:
            return self._long_poll.wait_for(
                {"revocations": tag}, lambda answer: answer.get("revocations") != tag, stop)
        except LongPollError as exc:
            self._long_poll_failed(exc)
            return False

    def _long_poll_failed(self, exc: LongPollError) -> None:
        if isinstance(exc, NoLongPoll):  # an older cloud: the fixed polls are no fault
            log.info("revocations: %s", exc)
        else:
            self._note(str(exc))

    def _note(self, error: str | None) -> None:
        with self._lock:
            repeated = error is not None and error == self._last_error
            self._last_error = error
        if error and not repeated:
            log.warning("revocations: %s", error)

    def poll_once(self, http: httpx.Client) -> bool:
        """Fetch the list and the CRL; True when a new CRL was put in use."""
        token = read_token(self._token_path)
        if token is None:
            raise RevocationError(f"no gateway token in {self._token_path}")
        headers = {"Authorization": f"Bearer {token}"}
        try:
            listed = http.get(self._base + REVOCATIONS_PATH, headers=headers)
            if not listed.is_success:
                raise RevocationError(f"revocations answered {listed.status_code}")
            items = listed.json()
            revoked = frozenset(str(i["device"]) for i in items
                                if isinstance(i, dict) and valid_device_id(i.get("device")))
            self._revoked = revoked
            resp = http.get(self._base + CRL_PATH, headers=headers)
        except httpx.HTTPError as exc:
            raise RevocationError(f"cloud unreachable: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise RevocationError("revocations response is not JSON") from exc
        if resp.status_code == 404:
            return False  # no CRL signed yet
        if not resp.is_success:
            raise RevocationError(f"CRL request answered {resp.status_code}")
        crl = verify_crl(resp.content, self._ca_cert)
        number = crl_number(crl)
        if self._number is not None and number <= self._number:
            return False
        tmp = self._crl_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(crl.public_bytes(Encoding.PEM))
        os.replace(tmp, self._crl_path)
        self._restart_broker()
        with self._lock:
            self._number = number
        log.info("CRL %d in use (%d revoked certificates); broker restarted", number, len(crl))
        return True
