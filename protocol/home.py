"""Where a single-machine install keeps its state: the one place every part resolves it.

The factory tools write keys under it, the gateway and the cloud read them from it: that is an
agreement between parts like the wire formats, so it lives here. CPython only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_HOME = "FLEETLOOP_HOME"
DEFAULT_HOME = ".fleetloop"


def resolve_home(explicit: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> Path:
    """`explicit` if given, else $FLEETLOOP_HOME, else ./.fleetloop; `~` expanded."""
    env = os.environ if env is None else env
    chosen = explicit if explicit is not None else (env.get(ENV_HOME) or DEFAULT_HOME)
    return Path(chosen).expanduser()
