"""Database URLs ikemgr can open: checked when the config loads, not when a sync first runs.

``postgres://`` (Heroku's and libpq's spelling) is no SQLAlchemy dialect and plain
``postgresql://`` loads psycopg2, which ikemgr does not ship; both would pass a string
check and fail on the first connection, hours later in a timer. The URL may carry a
password, so messages name the scheme only, never the URL.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

#: drivernames ikemgr installs the drivers for (pyproject: SQLAlchemy's sqlite, psycopg 3)
SUPPORTED = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
USE = "use sqlite:///<path> or postgresql+psycopg://<user>@<host>/<database>"


def check_db_url(value: str) -> str:
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError(f"not a SQLAlchemy URL: {USE}") from None
    name = url.drivername
    if name in SUPPORTED:
        if name.startswith("sqlite") and url.host:
            raise ValueError("a sqlite URL names a file, not a host: sqlite:////absolute/path.db")
        return value
    if name.split("+")[0] == "postgres":
        raise ValueError(f"{name}:// is not a SQLAlchemy dialect: use postgresql+psycopg://")
    if name.split("+")[0] == "postgresql":
        driver = name.partition("+")[2] or "psycopg2 (the default)"
        raise ValueError(f"{name}:// needs the driver {driver}, which ikemgr does not install: "
                         "use postgresql+psycopg://")
    raise ValueError(f"{name}:// is not supported: {USE}")


DbUrl = Annotated[str, AfterValidator(check_db_url)]
