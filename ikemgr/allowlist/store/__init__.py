"""The allow-list store (SQLite by default, PostgreSQL for several gateways).

The one entry point for other parts of ikemgr::

    store = open_store(cfg)
    pairs = store.active_pairs(now)   # frozenset[(account, vlan)]; BackendUnavailable('db', …) on outage
"""

from __future__ import annotations

from ikemgr.allowlist.store.dbapi import detail, store_url
from ikemgr.allowlist.store.repository import NOTIFY_CHANNEL, AuditEntry, Store, VlanInfo
from ikemgr.allowlist.store.version import HEAD_REVISION, VERSION_TABLE
from ikemgr.config.schema import Config
from ikemgr.errors import BackendUnavailable

DB_TIMEOUT = 10.0

__all__ = ["NOTIFY_CHANNEL", "AuditEntry", "Store", "VlanInfo", "current_actor", "open_store"]


def open_store(cfg: Config, *, timeout: float = DB_TIMEOUT, migrate: bool = True) -> Store:
    """Open the configured database and bring its schema to head (Alembic, at open).

    ``migrate=False`` skips the schema check for readers of a database some other process
    migrates; on a database that was never migrated every read then raises
    BackendUnavailable('db', 'no such table …'), so a daemon that may start first on a
    fresh install should keep the default.
    """
    store = Store(store_url(cfg.database.url, "database.url", cfg.database.password_file), timeout)
    # at head (one small query), SQLAlchemy and Alembic are not even imported
    if migrate and not store.at_head(HEAD_REVISION, VERSION_TABLE):
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        from ikemgr.allowlist.store.migrate import migrate as run_migrations

        try:
            run_migrations(store.engine)
        except (DBAPIError, SQLAlchemyError) as e:
            store.close()
            raise BackendUnavailable("db", detail(e)) from None
        except BaseException:
            store.close()
            raise
    return store


def current_actor(kind: str = "cli") -> str:
    """Who is changing the store, for the audit log: ``user@host`` or ``sync@host``."""
    import getpass
    import socket

    host = socket.gethostname()
    if kind == "sync":
        return f"sync@{host}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{host}"
