"""The customer's consent button on a product, on the host: ask a device to change its tier.

A board has a button (or a setting on its screen); a host device image has this request file,
`data/consent.request`, holding {"tier": "..."}. The agent picks it up at its start (before its
first sample) and about once a second while it runs, applies it (widening or narrowing),
logs a consent record and removes the file (device/consent.py). Writing the request needs
neither the agent nor any network: it works before the device's first boot, while it runs and
while it is offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from protocol import consent
from protocol.topics import valid_device_id

REQUEST = "consent.request"  # in the image's data/
IDENTITY = "identity.json"  # what makes a directory a device image (fwtool.provision)


class ConsentError(ValueError):
    """A request that cannot be written: an unknown tier or id, or no such device image."""


def image_dir(home: Path, device_id: str) -> Path:
    """Where `fleetloop fw provision` and `fleetloop device run` keep the device's image."""
    return Path(home) / "devices" / device_id


def request(home: Path, device_id: str, tier: str) -> Path:
    """Ask the device `device_id` (its image under `home`) to move to consent `tier`, as the
    customer pressing the product's button would; returns the request file's path.

    Raises ConsentError (a ValueError) for an unknown tier, an invalid id, or when the image
    does not exist (provision it first). The file is written atomically (temp file, 0600,
    then os.replace), so the agent never reads half of it; data/ is created 0700 if missing.
    """
    if not valid_device_id(device_id):
        raise ConsentError(f"invalid device id {device_id!r}")
    if tier not in consent.TIERS:
        raise ConsentError(f"unknown consent tier {tier!r}: choose one of {', '.join(consent.TIERS)}")
    image = image_dir(home, device_id)
    if not (image / IDENTITY).is_file():
        raise ConsentError(f"no device image for {device_id!r} at {image}: provision it first "
                           f"(fleetloop fw provision, or fleetloop device run)")
    data = image / "data"
    data.mkdir(mode=0o700, exist_ok=True)  # the running device may make it at the same moment
    path = data / REQUEST
    tmp = data / (REQUEST + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps({"tier": tier}, separators=(",", ":")).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
