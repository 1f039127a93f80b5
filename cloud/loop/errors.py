"""The loop's errors: one root under the cloud's, so the CLI and the API map them in one place."""

from __future__ import annotations

from cloud.errors import CloudError


class LoopError(CloudError):
    """Root of the loop's deliberate errors; `str(exc)` is the reason users see."""


class EngineDataError(LoopError):
    """A trajectory or RUL file that is missing, unreadable or not in NASA's layout."""


class ModelError(LoopError):
    """A model artefact that is missing, unreadable, or built for other features or libraries."""
