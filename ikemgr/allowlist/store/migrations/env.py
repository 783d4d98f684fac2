"""Alembic environment: always run programmatically by ikemgr.allowlist.store.migrate on a live connection."""

from __future__ import annotations

from alembic import context

from ikemgr.allowlist.store.models import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a hand-run `alembic` without ikemgr
    raise RuntimeError("ikemgr migrations run through ikemgr.allowlist.store.migrate(engine)")

context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
