"""SQLAlchemy engines for the store and for SQL sources, with timeouts and secrets from files.

Only SQLite (embedded default) and PostgreSQL through psycopg 3 are supported: the
store's upserts use their ``ON CONFLICT`` and both have been tested for real.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ikemgr.errors import BackendUnavailable, ConfigError, ConfigProblem
from ikemgr.fsio import config_secret

SUPPORTED = ("sqlite", "postgresql")


def parse_url(text: str, field: str, password_file: Path | None = None) -> URL:
    """A validated URL; the password (if any) comes from a root-only file, never from YAML."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as e:
        raise ConfigError([ConfigProblem(field, None, f"not a database URL: {e}")]) from None
    if url.get_backend_name() not in SUPPORTED:
        raise ConfigError([ConfigProblem(field, None, f"backend {url.get_backend_name()!r} is not "
                                         "supported (sqlite or postgresql+psycopg)")])
    if url.get_backend_name() == "postgresql" and url.get_driver_name() not in ("psycopg", ""):
        raise ConfigError([ConfigProblem(field, None, "use postgresql+psycopg:// (psycopg 3)")])
    if url.get_backend_name() == "postgresql" and not url.get_driver_name():
        url = url.set(drivername="postgresql+psycopg")
    if password_file is not None:
        url = url.set(password=config_secret(password_file, field))
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: URL, timeout: float, backend: str = "db", read_only: bool = False) -> Engine:
    """An engine whose connects and statements give up after ``timeout`` seconds.

    ``read_only`` (sources): touch nothing — no directory creation, no journal pragmas.
    """
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if read_only and url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:"):
        # open read-only: a missing registration file is an error, never silently created
        url = url.set(database=f"file:{url.database}", query={**url.query, "mode": "ro", "uri": "true"})
    if url.get_backend_name() == "sqlite":
        db = url.database
        if not read_only and db and db != ":memory:" and not db.startswith("file:"):
            try:
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BackendUnavailable(backend, f"cannot create {Path(db).parent}: {e.strerror}") from None
        kwargs["connect_args"] = {"timeout": timeout}
    else:
        kwargs["connect_args"] = {
            "connect_timeout": max(1, math.ceil(timeout)),
            "options": f"-c statement_timeout={int(timeout * 1000)}"
                       + (" -c default_transaction_read_only=on" if read_only else ""),
        }
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as e:
        raise BackendUnavailable(backend, f"cannot use {url.render_as_string()}: {e}") from None
    if url.get_backend_name() == "sqlite" and not read_only:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine
