"""The store's SQLAlchemy-free pieces: the URL split, timestamps as the columns hold them,
and the import graph that keeps `sync` and `hook` off SQLAlchemy."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from ikemgr.allowlist.store.dbapi import Dialect, store_url
from ikemgr.allowlist.store.models import UTCDateTime
from ikemgr.config.dburl import split_db_url
from ikemgr.errors import ConfigError

URLS = [
    "sqlite:////var/lib/ikemgr/ikemgr.db",
    "sqlite:///relative.db",
    "sqlite://",
    "sqlite+pysqlite:////tmp/x.db",
    "postgresql+psycopg://ikemgr@db.campus.example/ikemgr",
    "postgresql+psycopg://ikemgr:s%40cr%2Ft@db.campus.example:6543/ikemgr?sslmode=verify-full&sslrootcert=/etc/ca.pem",
    "postgresql+psycopg://u@[2001:db8::5]:5432/ikemgr",
    "postgresql+psycopg:///ikemgr?host=/run/postgresql",
    "postgres://u@h/d",
    "mysql://u@h/d",
]


def _parts_of_sqlalchemy(text: str) -> tuple[object, ...]:
    u = make_url(text)
    return (u.drivername, u.username, u.password, u.host, u.port, u.database,
            tuple((k, v) for k, v in u.query.items()))


@pytest.mark.parametrize("text", URLS)
def test_the_url_splits_as_sqlalchemy_splits_it(text: str) -> None:
    p = split_db_url(text)
    assert (p.drivername, p.username, p.password, p.host, p.port, p.database, p.query) \
        == _parts_of_sqlalchemy(text)


@given(st.text(alphabet="abc:/@?=&%[]+.5 ", max_size=40))
def test_any_text_splits_or_fails_as_sqlalchemy_does(text: str) -> None:
    try:
        want: tuple[object, ...] | None = _parts_of_sqlalchemy(text)
    except Exception:  # noqa: BLE001 - ArgumentError, ValueError (a port that is no number)
        want = None
    try:
        p = split_db_url(text)
        got: tuple[object, ...] | None = (p.drivername, p.username, p.password, p.host, p.port, p.database,
                                          p.query)
    except ValueError:
        got = None
    if want is not None and got is not None:
        # SQLAlchemy folds repeated query keys into a tuple; the store passes them as given
        assert got[:6] == want[:6]
    else:
        assert want is None and got is None


def test_the_password_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(split_db_url("postgresql+psycopg://u:s3cret@h/d"))


def test_a_store_url_of_another_database_is_refused_by_field() -> None:
    with pytest.raises(ConfigError, match="database.url"):
        store_url("mysql://u@h/d", "database.url")


STAMPS = [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
          datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=9))),
          datetime(2026, 6, 1, 12, 0)]


@pytest.mark.parametrize("value", STAMPS)
def test_a_timestamp_is_bound_as_sqlalchemys_column_type_binds_it(value: datetime) -> None:
    """Rows written by either path compare and read back the same (SQLite: the same text)."""
    for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
        col = UTCDateTime()
        bound = col.process_bind_param(value, dialect)
        if name == "sqlite":
            text = dialect.type_descriptor(col.impl).bind_processor(dialect)(bound)  # type: ignore[misc]
            assert Dialect("sqlite").stamp(value) == text
        else:
            assert Dialect("postgresql").stamp(value) == bound
        back = Dialect(name).unstamp(Dialect(name).stamp(value))
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        assert back == aware and back.tzinfo == UTC


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)),
       st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)))
def test_sqlite_text_order_is_time_order(a: datetime, b: datetime) -> None:
    d = Dialect("sqlite")
    assert (d.stamp(a) < d.stamp(b)) == (a < b)


def test_the_sync_and_hook_commands_import_no_sqlalchemy() -> None:
    """What `sync` loads on a store at head, and what `hook` loads at all (measured: ~0.2 s)."""
    code = ("import sys, json\n"
            "import ikemgr.cli, ikemgr.commands.sync, ikemgr.commands.hook\n"
            "import ikemgr.allowlist.store, ikemgr.allowlist.sources, ikemgr.allowlist.sync\n"
            "import ikemgr.allowlist.store.notify, ikemgr.render.systemd, ikemgr.engine.hook\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
