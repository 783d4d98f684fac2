"""PostgreSQL: every write to the grants table notifies, whoever makes it.

ikemgr's own writes already send ``NOTIFY ikemgr_grants`` in their transaction; a statement
trigger makes a write by anything else (psql, another tool on the shared database) heard by
every gateway's ``watch`` as well, so watch can rely on the notification and re-read the
whole list only when the clock says a grant starts or ends. SQLite needs nothing: its
``PRAGMA data_version`` already changes on every other connection's commit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: the channel of ikemgr.allowlist.store.repository.NOTIFY_CHANNEL (a literal here: a
#: migration must not change when the code that imports it does)
CHANNEL = "ikemgr_grants"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE OR REPLACE FUNCTION ikemgr_grants_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$""")
    op.execute("""
        CREATE TRIGGER ikemgr_grants_notify
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ikemgr_grants
        FOR EACH STATEMENT EXECUTE FUNCTION ikemgr_grants_notify()""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS ikemgr_grants_notify ON ikemgr_grants")
    op.execute("DROP FUNCTION IF EXISTS ikemgr_grants_notify()")
