"""Files only the cloud's user can read: telemetry is personal data.

`create_private_file(path)` makes the file's directory 0700 and the file 0600 before anything
writes to it (os.open with the mode, so there is no moment where it is readable by others),
and tightens an existing file and its `-wal`/`-shm` companions left by an older version.
SQLite gives the -wal and -shm files it creates the mode of the database file, so they follow.
A shared sticky directory (/tmp) is left as it is: only the files are made private there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if not path.stat().st_mode & stat.S_ISVTX and _mode(path) != DIR_MODE:
        path.chmod(DIR_MODE)


def create_private_file(path: Path, companions: tuple[str, ...] = ("-wal", "-shm")) -> None:
    """Create `path` 0600 (directory 0700) unless it exists; tighten it and its companions
    (`<path><suffix>`) when they exist. Raises OSError."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for file in (path, *(Path(f"{path}{suffix}") for suffix in companions)):
        if file.exists() and _mode(file) != FILE_MODE:
            file.chmod(FILE_MODE)
