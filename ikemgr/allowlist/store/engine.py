"""SQLAlchemy engines: the store's (migrations, tests) and SQL sources', with timeouts and secrets from files.

Only SQLite (embedded default) and PostgreSQL through psycopg 3 are supported: the
store's upserts use their ``ON CONFLICT`` and both have been tested for real.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ikemgr.allowlist.store.dbapi import connect
from ikemgr.config.dburl import DbUrlParts
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


def store_engine(parts: DbUrlParts, timeout: float) -> Engine:
    """The store's engine (migrations, tests): its connections come from ``dbapi.connect``,
    with the same timeouts and pragmas as the store's own."""
    drivername = parts.drivername if parts.backend == "sqlite" else "postgresql+psycopg"
    url = URL.create(drivername, username=parts.username, password=parts.password, host=parts.host,
                     port=parts.port, database=parts.database, query=dict(parts.query))
    return create_engine(url, creator=lambda: connect(parts, timeout), pool_pre_ping=True)


def source_engine(url: URL, timeout: float, backend: str) -> Engine:
    """A read-only engine on a SQL source, whose connects and statements give up after
    ``timeout`` seconds. It touches nothing: no directory creation, no journal pragmas, and a
    missing registration file is an error, never silently created."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            url = url.set(database=f"file:{url.database}", query={**url.query, "mode": "ro", "uri": "true"})
        kwargs["connect_args"] = {"timeout": timeout}
    else:
        kwargs["connect_args"] = {
            "connect_timeout": max(1, math.ceil(timeout)),
            "options": f"-c statement_timeout={int(timeout * 1000)} -c default_transaction_read_only=on",
        }
    try:
        return create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as e:
        raise BackendUnavailable(backend, f"cannot use {url.render_as_string()}: {e}") from None
