"""Database URLs ikemgr can open: checked when the config loads, not when a sync first runs.

``postgres://`` (Heroku's and libpq's spelling) is no SQLAlchemy dialect and plain
``postgresql://`` loads psycopg2, which ikemgr does not ship; both would pass a string
check and fail on the first connection, hours later in a timer. The URL may carry a
password, so messages name the scheme only, never the URL.

The URL is split here with SQLAlchemy's own grammar (``sqlalchemy.engine.url``; a unit
test holds the two to the same parts) rather than by importing SQLAlchemy: every
command loads the config, `hook` runs inside charon's updown and `sync` on a timer, and
importing SQLAlchemy costs ~0.15–0.2 s of CPU that neither needs when the store's schema
is at head (docs/allow-list.md, "Speed").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import parse_qsl, unquote

from pydantic import AfterValidator

#: drivernames ikemgr installs the drivers for (pyproject: SQLAlchemy's sqlite, psycopg 3)
SUPPORTED = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
USE = "use sqlite:///<path> or postgresql+psycopg://<user>@<host>/<database>"

# sqlalchemy.engine.url._parse_url's pattern, verbatim
_URL = re.compile(r"""
    (?P<name>[\w\+]+)://
    (?:
        (?P<username>[^:/]*)
        (?::(?P<password>[^@]*))?
    @)?
    (?:
        (?:
            \[(?P<ipv6host>[^/\?]+)\] |
            (?P<ipv4host>[^/:\?]+)
        )?
        (?::(?P<port>[^/\?]*))?
    )?
    (?:/(?P<database>[^\?]*))?
    (?:\?(?P<query>.*))?
    """, re.X)


@dataclass(frozen=True)
class DbUrlParts:
    """A database URL's parts, as SQLAlchemy's ``make_url`` splits them."""

    drivername: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    @property
    def backend(self) -> str:
        return self.drivername.partition("+")[0]

    @property
    def driver(self) -> str:
        return self.drivername.partition("+")[2]

    def with_password(self, password: str | None) -> DbUrlParts:
        return DbUrlParts(self.drivername, self.username, password, self.host, self.port, self.database,
                     self.query)


def split_db_url(text: str) -> DbUrlParts:
    """The parts of ``text``; ValueError if it is no URL SQLAlchemy would parse."""
    m = _URL.match(text)
    if m is None:
        raise ValueError("Could not parse SQLAlchemy URL from given URL string")
    parts = m.groupdict()
    port = parts["port"]
    return DbUrlParts(
        parts["name"],
        None if parts["username"] is None else unquote(parts["username"]),
        None if parts["password"] is None else unquote(parts["password"]),
        parts["ipv4host"] or parts["ipv6host"],
        int(port) if port else None,
        None if parts["database"] is None else unquote(parts["database"]),
        tuple(parse_qsl(parts["query"])) if parts["query"] is not None else (),
    )


def check_db_url(value: str) -> str:
    try:
        url = split_db_url(value)
    except ValueError:
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
