"""The store's connections through the DB-API itself: sqlite3, or psycopg 3 for PostgreSQL.

What `sync` runs on every timer tick — the schema check, the read of a source's grants,
the one write transaction, the live SAs' lookups — is plain SQL on one of these
connections: importing SQLAlchemy and building its engine cost ~0.2 s of a command that
must finish within 1 s (docs/allow-list.md, "Speed"). Every read and write of the store
goes through here; the schema and its migrations (Alembic) keep SQLAlchemy, whose engine
is made on first use on connections opened here (``creator``), so both connect with the
same timeouts and pragmas. The statements are the same text on both databases; only
the parameter marker and the timestamp's form differ, and ``Dialect`` holds both.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ikemgr.config.dburl import DbUrlParts, split_db_url
from ikemgr.errors import BackendUnavailable, ConfigError, ConfigProblem
from ikemgr.fsio import config_secret

SUPPORTED = ("sqlite", "postgresql")


def store_url(text: str, field: str, password_file: Path | None = None) -> DbUrlParts:
    """The store's URL, its password (if any) from a root-only file, never from YAML."""
    try:
        url = split_db_url(text)
    except ValueError as e:
        raise ConfigError([ConfigProblem(field, None, f"not a database URL: {e}")]) from None
    if url.backend not in SUPPORTED or (url.backend == "postgresql" and url.driver not in ("psycopg", "")):
        raise ConfigError([ConfigProblem(field, None, "use sqlite:///<path> or postgresql+psycopg://")])
    if password_file is not None:
        url = url.with_password(config_secret(password_file, field))
    return url


def sqlite_pragmas(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def connect(url: DbUrlParts, timeout: float) -> Any:
    """A new DB-API connection (transactions begin implicitly, as SQLAlchemy expects).

    Connects and statements give up after ``timeout`` seconds; a failure is
    BackendUnavailable('db'), never a driver exception.
    """
    if url.backend == "sqlite":
        db = url.database or ":memory:"
        if db != ":memory:" and not db.startswith("file:"):
            try:
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BackendUnavailable("db", f"cannot create {Path(db).parent}: {e.strerror}") from None
        try:
            conn = sqlite3.connect(db, timeout=timeout, uri=db.startswith("file:"),
                                   check_same_thread=False)
            sqlite_pragmas(conn)
        except sqlite3.Error as e:
            raise BackendUnavailable("db", detail(e)) from None
        return conn
    import psycopg  # only for a PostgreSQL store

    try:
        return psycopg.connect(**pg_params(url, timeout),
                               options=f"-c statement_timeout={int(timeout * 1000)}")
    except psycopg.Error as e:
        raise BackendUnavailable("db", detail(e)) from None


def pg_params(url: DbUrlParts, timeout: float) -> dict[str, Any]:
    """libpq's connection parameters: the URL's parts, its query (``sslmode=…``) and a connect timeout."""
    return {"host": url.host, "port": url.port, "dbname": url.database, "user": url.username,
            "password": url.password, "connect_timeout": max(1, math.ceil(timeout)), **dict(url.query)}


def detail(e: BaseException) -> str:
    """The first line of a database error (no URL, no password), at most 300 characters."""
    orig = getattr(e, "orig", None) or e
    first = str(orig).strip().splitlines()
    return first[0][:300] if first else type(orig).__name__


class Dialect:
    """What differs between the two databases for the same statement text."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "postgresql":
            import psycopg

            self.error: type[Exception] = psycopg.Error
            self.integrity: type[Exception] = psycopg.IntegrityError
        else:
            self.error, self.integrity = sqlite3.Error, sqlite3.IntegrityError

    def sql(self, text: str) -> str:
        """Statements are written with ``?`` markers; psycopg's are ``%s``."""
        return text.replace("?", "%s") if self.name == "postgresql" else text

    def marks(self, n: int) -> str:
        return ", ".join(["?"] * n)

    def stamp(self, value: datetime | None) -> Any:
        """A timestamp as the grants' columns hold it (models.UTCDateTime): UTC; on SQLite
        the naive text SQLAlchemy writes there (always with microseconds, so that text
        order is time order)."""
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if self.name == "postgresql":
            return value
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")

    def unstamp(self, value: Any) -> datetime | None:
        """A stored timestamp back as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
