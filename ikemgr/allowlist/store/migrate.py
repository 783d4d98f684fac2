"""Create or upgrade the schema at open, through the Alembic migrations shipped in the package.

Several gateways may open one PostgreSQL database at the same moment; a transaction-level
advisory lock makes the first one migrate and the others wait, then find it at head.

Every command opens the store, and importing SQLAlchemy and Alembic costs ~0.3 s: when
the version table already says ``HEAD_REVISION`` (one small query, ``Store.at_head``) this
module is not imported at all. A unit test keeps ``HEAD_REVISION`` equal to the migration scripts' head.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from ikemgr.allowlist.store.version import HEAD_REVISION, VERSION_TABLE
from ikemgr.fsio import held

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

SCRIPT_LOCATION = "ikemgr.allowlist.store:migrations"
_PG_LOCK_KEY = 0x696B656D  # "ikem"


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


@cache
def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def migrate(engine: Engine, timeout: float = 60) -> str | None:
    """Bring the schema to head; a no-op (one small query) when it is already there.

    SQLite has no advisory locks and pysqlite starts transactions lazily, so two processes
    opening a new file at once would both create the tables: a lock file next to the
    database serialises them instead.
    """
    if _at_head(engine):
        return HEAD_REVISION
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if db and db != ":memory:" and not db.startswith("file:"):
        with held(Path(db + ".migrate.lock"), timeout):
            return _migrate(engine)
    return _migrate(engine)


def _at_head(engine: Engine) -> bool:
    """The version table already names HEAD_REVISION (no table yet, or any error: not known)."""
    try:
        with engine.connect() as conn:
            row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    except DBAPIError:
        return False
    return row is not None and row[0] == HEAD_REVISION


def _migrate(engine: Engine) -> str | None:
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        if current_revision(conn) == head_revision():
            return head_revision()
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        return current_revision(conn)
