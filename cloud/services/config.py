"""Desired device config: versions per device, signed envelopes, the gateways' feed.

Each PUT of desired settings becomes version (previous + 1) for that device, signed with the
cloud's Ed25519 config key as a protocol.config envelope, and gets a global revision. Gateways
poll the feed with the last revision they saw and publish each envelope retained on the
device's config topic; the device verifies it and reports the outcome in its state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from cloud.errors import InvalidSettings, Unavailable
from cloud.store import ConfigRow, DeviceRow, Store
from protocol import config as config_codec


class ConfigSigner:
    """Signs config bodies with the PEM PKCS8 Ed25519 key at `path`, loaded on first use.

    Loading lazily lets the service start (and serve ingest) before the key exists; a PUT
    then fails with Unavailable and a reason that names the path.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: Ed25519PrivateKey | None = None
        self._lock = threading.Lock()

    def _load(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._key is None:
                try:
                    data = self.path.read_bytes()
                except OSError as exc:
                    raise Unavailable(
                        f"config-signing key not readable at {self.path}: {exc.strerror}"
                    ) from exc
                try:
                    key = load_pem_private_key(data, password=None)
                except (ValueError, TypeError) as exc:
                    raise Unavailable(f"config-signing key at {self.path} is not a PEM key") from exc
                if not isinstance(key, Ed25519PrivateKey):
                    raise Unavailable(f"config-signing key at {self.path} is not Ed25519")
                self._key = key
            return self._key

    def sign(self, data: bytes) -> bytes:
        return self._load().sign(data)

    def public_key_bytes(self) -> bytes:
        return self._load().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Reported:
    config_version: int | None
    config_status: str
    reason: str


def check_settings(settings: Any) -> dict[str, Any]:
    try:
        config_codec.check_settings(settings)
    except ValueError as exc:
        raise InvalidSettings(str(exc)) from exc
    return dict(settings)


def put_desired(
    store: Store, signer: ConfigSigner, device_id: str, settings: Any, now_ms: int,
    consent: str | None = None,
) -> ConfigRow:
    """Validate, version, sign and store; returns the stored config. `consent`: a tier
    (protocol.consent) this version narrows the device to (cloud.services.consent). Every
    later version carries the narrowing too while the device has not confirmed it (the cap is
    in force): the broker keeps only the latest config, so a narrowing must not be lost under
    an ops change made before the device fetched it.

    InvalidSettings (422) also when the envelope would exceed the one downlink limit
    (protocol.bounds.MAX_DOWNLINK_BYTES): the cloud never signs what a device cannot take.
    """
    settings = check_settings(settings)
    with store.transaction():
        return insert_desired(store, signer, device_id, settings, now_ms, consent)


def insert_desired(
    store: Store, signer: ConfigSigner, device_id: str, settings: dict[str, Any], now_ms: int,
    consent: str | None = None,
) -> ConfigRow:
    """put_desired inside the caller's transaction, for checked settings."""
    latest = store.latest_config(device_id)
    version = 1 if latest is None else latest.version + 1
    body: dict[str, Any] = {"device": device_id, "version": version, "issued": now_ms,
                            "settings": settings}
    if consent is None:
        device = store.get_device(device_id)
        consent = None if device is None else device.consent_cap
    if consent is not None:
        body["consent"] = consent
    try:
        envelope = config_codec.seal(body, signer.sign).decode()
    except ValueError as exc:  # "too large (N > M)", or a body protocol.config refuses
        raise InvalidSettings(f"config refused: {exc}") from exc
    revision = store.insert_config(device_id, version, now_ms, settings, envelope)
    return ConfigRow(
        device=device_id, version=version, revision=revision, issued_ms=now_ms,
        settings=settings, envelope=envelope,
    )


def desired(store: Store, device_id: str) -> ConfigRow | None:
    return store.latest_config(device_id)


def reported(device: DeviceRow) -> Reported | None:
    """What the device said about its config in its latest state message."""
    state = device.reported
    if state is None:
        return None
    return Reported(
        config_version=state.get("config_version"),
        config_status=state.get("config_status", "none"),
        reason=state.get("reason", ""),
    )


def feed(store: Store, after: int, gateway_id: str) -> tuple[int, list[ConfigRow]]:
    """(newest revision, latest config of each device changed after `after`), limited to the
    devices `gateway_id` serves (assigned to it, or not assigned yet): a site's gateway does
    not learn other sites' device settings. A device moved to another gateway has its latest
    config announced again at a new revision (cloud.services.assignment), so it shows up here
    for its new gateway.

    The revision returned is the store's newest (0 when empty), even if `after` is larger:
    a gateway that stored a revision from a since-reset cloud then starts over.
    """
    # Newest revision first: a config committed between the two reads is then sent now and
    # again next time (harmless, the device ignores versions it has), never skipped.
    revision = store.max_config_revision()
    return revision, store.configs_after(after, gateway_id)
