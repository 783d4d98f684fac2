"""Create or upgrade the schema at open, through the Alembic migrations shipped in the package.

Several gateways may open one PostgreSQL database at the same moment; a transaction-level
advisory lock makes the first one migrate and the others wait, then find it at head.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from ikemgr.store.lock import held
from ikemgr.store.models import VERSION_TABLE

SCRIPT_LOCATION = "ikemgr.store:migrations"
_PG_LOCK_KEY = 0x696B656D  # "ikem"


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def migrate(engine: Engine, timeout: float = 60) -> str | None:
    """Bring the schema to head; a no-op (one small query) when it is already there.

    SQLite has no advisory locks and pysqlite starts transactions lazily, so two processes
    opening a new file at once would both create the tables: a lock file next to the
    database serialises them instead.
    """
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if db and db != ":memory:" and not db.startswith("file:"):
        with held(Path(db + ".migrate.lock"), timeout):
            return _migrate(engine)
    return _migrate(engine)


def _migrate(engine: Engine) -> str | None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        if current_revision(conn) == head_revision():
            return head_revision()
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        return current_revision(conn)
