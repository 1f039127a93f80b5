"""The cloud's one exception root. Services raise these; main.py maps them to HTTP statuses."""

from __future__ import annotations


class CloudError(Exception):
    """Root of every error the cloud raises on purpose. `str(exc)` is the reason users see."""


class SettingsError(CloudError):
    """The service must not start with these settings (e.g. a default secret outside dev)."""


class InvalidRequest(CloudError):
    """Malformed input: a batch that does not parse or verify, a missing header."""


class InvalidSettings(CloudError):
    """Desired device settings that protocol.config refuses."""


class UnknownReference(CloudError):
    """A request body names something that does not exist (e.g. the gateway to assign a
    device to); the resource in the path exists, so this is 422, not 404."""


class Refused(CloudError):
    """Well-formed input the cloud will not take, for one or more reasons (a bundle that does
    not verify, a rollout it cannot plan): 422 with every reason."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons) or ["refused"]
        super().__init__("; ".join(self.reasons))


class UnsupportedMediaType(CloudError):
    """A body of a type the endpoint does not take."""


class Unauthorized(CloudError):
    """No credentials, or credentials nobody issued."""


class Forbidden(CloudError):
    """Valid credentials that do not cover this request."""


class NotFound(CloudError):
    """The thing asked for does not exist."""


class Conflict(CloudError):
    """The request contradicts stored state (a broken batch chain, a different gateway key)."""


class TooLarge(CloudError):
    """A request body over the accepted size."""


class Unavailable(CloudError):
    """A resource the request needs is missing on the server (e.g. the config-signing key)."""


class LoginRequired(CloudError):
    """A dashboard page without a session: answered with a redirect (303) to the login page."""
