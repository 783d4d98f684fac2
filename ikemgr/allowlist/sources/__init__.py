"""Allow-list sources: each reads entries as they are and hands them over as RawEntry values
(or their bare tuples, ``RawRow``).

A source never decides what is valid (core.grants does) and never returns a partial
list: any failure — unreachable, timeout, query error, truncated file, TLS or bind
failure, missing group — raises BackendUnavailable, so the caller keeps the last good
state instead of seeing "empty".
"""

from __future__ import annotations

from collections.abc import Sequence

from ikemgr.allowlist.sources.listfile import fetch_file
from ikemgr.config.services import Ldap
from ikemgr.config.sync import FileSource, LdapGroupSource, SqlSource, Sync
from ikemgr.core.grants import RawRow

__all__ = ["fetch_all", "fetch_one"]


def fetch_one(src: SqlSource | FileSource | LdapGroupSource, timeout: float,
              ldap: Ldap | None = None) -> Sequence[RawRow]:
    """One source; ``ldap`` (the config's ``ldap:`` section) is needed by ``kind: ldap_group``."""
    if isinstance(src, SqlSource):
        # imported here: SQLAlchemy (~0.15 s) only for configs with a SQL source
        from ikemgr.allowlist.sources.sql import fetch_sql

        return fetch_sql(src, timeout)
    if isinstance(src, LdapGroupSource):
        if ldap is None:
            raise TypeError(f"source {src.name}: an ldap_group source needs the ldap settings")
        # imported here: only configs with a group source need ldap3 loaded
        from ikemgr.allowlist.sources.ldap_group import fetch_ldap_group

        return fetch_ldap_group(src, ldap, timeout)
    return fetch_file(src)


def fetch_all(sync: Sync, ldap: Ldap | None = None) -> dict[str, Sequence[RawRow]]:
    """Every configured source, all or nothing: the first failure aborts the whole sync."""
    return {src.name: fetch_one(src, sync.timeout, ldap) for src in sync.sources}
