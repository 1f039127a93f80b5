"""The files under <home>/keys the gateway needs (written by `fleetloop fw keygen`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.errors import KeyFileError


@dataclass(frozen=True)
class GatewayKeys:
    ca_cert: Path  # device CA: verifies device and broker certificates
    broker_cert: Path
    broker_key: Path
    mqtt_cert: Path  # the gateway's own MQTT client certificate, CN = gateway id
    mqtt_key: Path
    batch_key: Path  # Ed25519 batch-signing key

    @classmethod
    def under(cls, home: Path, gateway_id: str) -> GatewayKeys:
        keys = home / "keys"
        gw = keys / "gateways" / gateway_id
        return cls(
            ca_cert=keys / "ca.crt.pem",
            broker_cert=keys / "broker.crt.pem",
            broker_key=keys / "broker.key.pem",
            mqtt_cert=gw / "mqtt.crt.pem",
            mqtt_key=gw / "mqtt.key.pem",
            batch_key=gw / "batch.key.pem",
        )

    def check(self) -> None:
        """Raise KeyFileError naming every missing or unreadable file."""
        bad = []
        for path in (self.ca_cert, self.broker_cert, self.broker_key, self.mqtt_cert,
                     self.mqtt_key, self.batch_key):
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                bad.append(f"{path} ({exc.strerror})")
        if bad:
            raise KeyFileError(
                "missing gateway keys: " + "; ".join(bad)
                + " - run `fleetloop fw keygen` for this home and gateway id first"
            )

    def load_batch_key(self) -> Ed25519PrivateKey:
        try:
            key = load_pem_private_key(self.batch_key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"cannot load batch key {self.batch_key}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{self.batch_key} is not an Ed25519 private key")
        return key
