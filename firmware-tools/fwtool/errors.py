"""The one exception root of fwtool; the CLI turns it into a clean message."""


class FwToolError(Exception):
    """Anything fwtool refuses to do, with a message meant for a human."""

    exit_code = 1


class InvalidIdError(FwToolError, ValueError):
    """A gateway or device id that protocol.topics.valid_device_id rejects."""

    exit_code = 2


class UsageError(FwToolError, ValueError):
    """A bad argument (unknown profile, malformed broker address, ...)."""

    exit_code = 2


class MissingKeysError(FwToolError):
    """Key material that `fleetloop fw keygen` should have written is absent."""


class RefusedError(FwToolError):
    """A bundle (or what it is applied to) that fails a check: its signature, product,
    version, a file's hash. The message gives every reason."""
