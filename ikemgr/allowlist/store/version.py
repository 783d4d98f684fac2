"""The schema's version: what ``open_store`` checks (one small query) before it needs SQLAlchemy."""

#: Alembic's version table, prefixed so a shared database can hold other applications.
VERSION_TABLE = "ikemgr_alembic_version"
#: the newest migration's revision id (ikemgr/allowlist/store/migrations/versions); a unit
#: test keeps it equal to the migration scripts' head
HEAD_REVISION = "0003"
