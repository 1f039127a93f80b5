"""The gateway's one exception root; the CLI turns these into clean messages."""


class GatewayError(Exception):
    """Anything the gateway refuses or cannot do, with a message meant for an operator."""


class SettingsError(GatewayError):
    """A setting (CLI option or environment variable) is invalid."""


class KeyFileError(GatewayError):
    """A key or certificate the gateway needs is missing or unreadable."""


class BrokerError(GatewayError):
    """Mosquitto could not be configured, started or stopped."""


class StoreError(GatewayError):
    """The gateway database is unusable (corrupt, wrong schema version, locked)."""


class DiagError(GatewayError):
    """The status of a gateway could not be read."""


class EnrollError(GatewayError):
    """The cloud refused to register this gateway, or could not be reached."""
