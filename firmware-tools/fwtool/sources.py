"""Which source files make a device's firmware: the device package's modules that run on a
board, one product's profile, and the protocol modules a device needs. Package sources are
found and read as files, never imported."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path

import protocol

from .errors import FwToolError, UsageError

PROFILES = ("bike", "mirror", "engine")
DEFAULT_FW = "0.1.0"
CPYTHON_ONLY = "# cpython-only"
SKIP_DIRS = frozenset({"__pycache__", "tests", "test"})
BOOT = "boot.py"  # device/boot.py: the image's boot module, at the image root, never in a slot
FIRST_STAGE = "first_stage.py"  # device/first_stage.py: the slot choice, beside it, the same
ROOT_MODULES = (BOOT, FIRST_STAGE)
PROFILE_DIR = "profiles"
_VERSION_RE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


def package_dir(name: str) -> Path:
    """Directory of a package, found without importing it."""
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise FwToolError(f"cannot find the {name!r} package; is fleetloop installed?")
    return Path(locations[0])


def firmware_version(device_src: Path) -> str:
    """``__version__`` of device/__init__.py if it declares one, else DEFAULT_FW."""
    init = device_src / "__init__.py"
    found = _VERSION_RE.search(init.read_text()) if init.is_file() else None
    return found.group(1) if found else DEFAULT_FW


def device_sources(root: Path) -> Iterator[Path]:
    """The modules of the device package that go into its firmware, relative to ``root``: .py
    sources that are not CPython-only, without the boot modules (they sit at the image's root)
    and without data (the engine's trajectory is cut per device into the image's assets/)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            if name.endswith(".py") and str(rel) not in ROOT_MODULES and not _cpython_only(path):
                yield rel


def slot_sources(product: str, device_src: Path, protocol_src: Path) -> list[tuple[str, Path]]:
    """(path in the slot, source file) of one product's firmware, sorted by path: the device
    modules (device_sources) without the other products' profiles, and protocol.DEVICE_MODULES.
    A bike's firmware never carries the engine's code: an update of one product's profile
    changes no other product's bundle."""
    if product not in PROFILES:
        raise UsageError(f"unknown product {product!r}: choose one of {', '.join(PROFILES)}")
    if not device_src.is_dir():
        raise FwToolError(f"device package not found at {device_src}")
    others = {f"{PROFILE_DIR}/{p}.py" for p in PROFILES if p != product}
    out = [(f"device/{rel.as_posix()}", device_src / rel) for rel in device_sources(device_src)
           if rel.as_posix() not in others]
    own = device_src / PROFILE_DIR / f"{product}.py"
    if not own.is_file():
        raise FwToolError(f"the device package at {device_src} has no {product} profile ({own})")
    for name in protocol.DEVICE_MODULES:
        module = protocol_src / f"{name}.py"
        if not module.is_file():
            raise FwToolError(f"protocol module {module} listed in DEVICE_MODULES is missing")
        out.append((f"protocol/{name}.py", module))
    return sorted(out)


def _cpython_only(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return CPYTHON_ONLY in f.readline()
