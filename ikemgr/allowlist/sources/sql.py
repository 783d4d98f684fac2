"""The SQL source: a campus registration database, read through a configured query or view.

The query text is the operator's, from the config file; no value from any row is ever
put into SQL. Rows must carry columns ``account`` and ``vlan``; ``valid_from``,
``valid_until`` and ``note`` are used when present. Connect and statement time are
bounded by ``sync.timeout``; any error aborts the sync (the store is left as it was).
"""

from __future__ import annotations

from sqlalchemy import literal_column, select, table, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ikemgr.allowlist.store.dbapi import detail
from ikemgr.allowlist.store.engine import parse_url, source_engine
from ikemgr.config.sync import SqlSource
from ikemgr.core.grants import RawEntry
from ikemgr.errors import BackendUnavailable

REQUIRED = ("account", "vlan")
OPTIONAL = ("valid_from", "valid_until", "note")


def _statement(src: SqlSource):  # type: ignore[no-untyped-def]
    if src.query is not None:
        return text(src.query)
    assert src.view is not None
    schema, _, name = src.view.rpartition(".")
    return select(literal_column("*")).select_from(table(name, schema=schema or None))


def fetch_sql(src: SqlSource, timeout: float) -> list[RawEntry]:
    backend = f"source {src.name}"
    url = parse_url(src.url, f"sync.sources[{src.name}].url", src.password_file)
    engine = source_engine(url, timeout, backend)
    try:
        with engine.connect() as conn:
            result = conn.execute(_statement(src))
            cols = list(result.keys())
            missing = [c for c in REQUIRED if c not in cols]
            if missing:
                raise BackendUnavailable(backend, f"query returned no column(s) {', '.join(missing)} "
                                         f"(got {', '.join(cols) or 'none'})")
            ia, iv = cols.index("account"), cols.index("vlan")
            io = [cols.index(c) if c in cols else None for c in OPTIONAL]
            out: list[RawEntry] = []
            for n, row in enumerate(result, start=1):
                vf, vu, nt = (None if i is None else row[i] for i in io)
                out.append(RawEntry(src.name, f"row {n}", row[ia], row[iv], vf, vu, nt))
            return out
    except (DBAPIError, SQLAlchemyError) as e:
        raise BackendUnavailable(backend, detail(e)) from None
    finally:
        engine.dispose()
