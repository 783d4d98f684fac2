"""Atomic file writes for the PKI and the profiles, through the project's one writer.

``fsio.atomic_write``: a temp file in the target directory, mode set before the data
lands, fsync, rename.
"""

from __future__ import annotations

from pathlib import Path

from ikemgr.fsio import atomic_write


def write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; a private directory for 0600 files."""
    if mode & 0o077 == 0:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data, mode)
