"""Revocation: the cloud's list of revoked device certificates, and the device CA's signed CRL.

The device CA's key stays with the factory (firmware-tools, `fleetloop fw crl`): neither the
cloud nor a gateway can sign a CRL, so neither can mint or un-revoke a device. The flow:
1. ops revoke a device (cloud.services.registry); its data is refused from then on;
2. the factory fetches the list (GET /api/v1/revocations: serials and fingerprints), signs a
   CRL with the device CA key and uploads it (PUT /api/v1/revocations/crl);
3. each gateway pulls the latest CRL (GET /api/v1/gateway/crl), verifies it against its own
   copy of the device CA certificate, writes it as its broker's `crlfile` and restarts the
   broker (Mosquitto 2.0 reads the CRL only at start). Until then the gateway already drops
   the revoked devices' messages, from the same list.
The cloud checks an upload only for what it can know without the CA certificate: a CRL that
parses, numbered above the last one, listing every revoked device's certificate serial it
knows. A CRL signed by anyone else is refused by every gateway.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from cloud.errors import Conflict, InvalidRequest, NotFound
from cloud.services import audit
from cloud.services.audit import Actor
from cloud.store import CrlRow, RegistryRow, Store

MAX_CRL_BYTES = 1024 * 1024


def revoked(store: Store) -> list[RegistryRow]:
    return store.revoked_devices()


def crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        ext = crl.extensions.get_extension_for_oid(ExtensionOID.CRL_NUMBER)
    except x509.ExtensionNotFound as exc:
        raise InvalidRequest("the CRL has no CRL number") from exc
    value = ext.value
    assert isinstance(value, x509.CRLNumber)
    return int(value.crl_number)


def upload(store: Store, caller: Actor, der: bytes, now_ms: int) -> CrlRow:
    """Store a CRL from the factory; InvalidRequest when it does not parse, Conflict when it
    is older than the stored one or misses a revoked serial."""
    if len(der) > MAX_CRL_BYTES:
        raise InvalidRequest(f"CRL larger than {MAX_CRL_BYTES} bytes")
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise InvalidRequest("not a DER-encoded X.509 CRL") from exc
    number = crl_number(crl)
    listed = {format(r.serial_number, "x") for r in crl}
    with store.transaction():
        latest = store.latest_crl()
        if latest is not None and number <= latest.number:
            raise Conflict(f"CRL number {number} is not above the stored {latest.number}")
        missing = [r.device for r in store.revoked_devices()
                   if r.cert_serial is not None and r.cert_serial not in listed]
        if missing:
            raise Conflict("the CRL does not revoke the certificate of " + ", ".join(missing[:5]))
        row = CrlRow(der=der, number=number, created_ms=now_ms, uploaded_by=caller.name)
        store.insert_crl(row)
        audit.record(store, caller, "crl.upload", f"crl:{number}", now_ms,
                     after={"number": number, "serials": sorted(listed)[:100],
                            "revoked": len(listed)})
    return row


def latest(store: Store) -> CrlRow:
    row = store.latest_crl()
    if row is None:
        raise NotFound("no CRL uploaded yet")
    return row
