"""Atomic file writes for the PKI and the profiles: the one import of the project's writer.

``atomic_write`` (temp file in the target directory, mode set before the data lands,
rename) lives in ``ikemgr/adapters/files.py`` today and moves to ``ikemgr/fsio.py`` in the
restructure; only this line needs repointing.
"""

from __future__ import annotations

from pathlib import Path

from ikemgr.fsio import atomic_write


def write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; a private directory for 0600 files."""
    if mode & 0o077 == 0:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data, mode)
