"""Allow-list sources: each reads entries as they are and hands them over as RawEntry values.

A source never decides what is valid (core.grants does) and never returns a partial
list: any failure — unreachable, timeout, query error, truncated file — raises
BackendUnavailable, so the caller keeps the last good state instead of seeing "empty".
"""

from __future__ import annotations

from ikemgr.config.schema import FileSource, SqlSource, Sync
from ikemgr.core.grants import RawEntry
from ikemgr.sources.listfile import fetch_file
from ikemgr.sources.sql import fetch_sql

__all__ = ["fetch_all", "fetch_one"]


def fetch_one(src: SqlSource | FileSource, timeout: float) -> list[RawEntry]:
    if isinstance(src, SqlSource):
        return fetch_sql(src, timeout)
    return fetch_file(src)


def fetch_all(sync: Sync) -> dict[str, list[RawEntry]]:
    """Every configured source, all or nothing: the first failure aborts the whole sync."""
    return {src.name: fetch_one(src, sync.timeout) for src in sync.sources}
