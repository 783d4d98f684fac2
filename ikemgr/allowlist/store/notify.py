"""Wake up when the allow-list changes, without waiting for the periodic reconcile.

PostgreSQL: every store write sends ``NOTIFY ikemgr_grants`` in its transaction, so a
listener on any gateway hears it right after the commit. SQLite: ``PRAGMA data_version``
changes whenever another connection commits to the file; it is polled a few times per
second (cheap: no table is read). Either way ``wait(timeout)`` returns True on a change
and False on timeout, and raises BackendUnavailable('db') if the database goes away, so
``watch`` can fall back to its periodic reconcile and reconnect.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import psycopg

from ikemgr.allowlist.store.dbapi import detail, pg_params, store_url
from ikemgr.allowlist.store.repository import NOTIFY_CHANNEL
from ikemgr.config.dburl import DbUrlParts
from ikemgr.config.schema import Config
from ikemgr.errors import BackendUnavailable

SQLITE_POLL = 0.2


class ChangeListener:
    """One dedicated connection that waits for grant changes made by anyone."""

    def __init__(self, cfg: Config, timeout: float = 10.0) -> None:
        self.url: DbUrlParts = store_url(cfg.database.url, "database.url", cfg.database.password_file)
        self.timeout = timeout
        self._pg: psycopg.Connection[Any] | None = None
        self._lite: sqlite3.Connection | None = None
        self._version: int | None = None

    def _connect(self) -> None:
        try:
            if self.url.backend == "postgresql":
                if self._pg is None or self._pg.closed:
                    self._pg = psycopg.connect(**pg_params(self.url, self.timeout), autocommit=True)
                    self._pg.execute(f"LISTEN {NOTIFY_CHANNEL}")
            elif self._lite is None:
                db = self.url.database or ":memory:"
                self._lite = sqlite3.connect(db, timeout=self.timeout, isolation_level=None)
                self._version = self._data_version()
        except (psycopg.Error, sqlite3.Error) as e:
            self.close()
            raise BackendUnavailable("db", detail(e)) from None

    def _data_version(self) -> int:
        assert self._lite is not None
        return int(self._lite.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, timeout: float) -> bool:
        """True as soon as another transaction changed the store; False after ``timeout`` s."""
        self._connect()
        try:
            if self._pg is not None:
                got = list(self._pg.notifies(timeout=timeout, stop_after=1))
                return bool(got)
            deadline = time.monotonic() + timeout
            while True:
                v = self._data_version()
                if v != self._version:
                    self._version = v
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(SQLITE_POLL, left))
        except (psycopg.Error, sqlite3.Error) as e:
            self.close()
            raise BackendUnavailable("db", detail(e)) from None

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None
        if self._lite is not None:
            self._lite.close()
            self._lite = None

    def __enter__(self) -> ChangeListener:
        self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
