"""Per synced source: the identity grammar that checked the grants the store holds for it.

``sync`` writes the fingerprint of its grammar (``IdentityGrammar.fingerprint``) in the
transaction that writes a source's grants; the next sync with the same grammar need not
check again an entry that is, character for character, a plain grant it already holds. A
different grammar (a changed pattern in the config, a newer ikemgr, another gateway on the
shared database) finds another fingerprint and checks every entry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ikemgr.allowlist.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ikemgr_sync_sources",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("grammar", sa.String(64), nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_ikemgr_sync_sources"),
    )


def downgrade() -> None:
    op.drop_table("ikemgr_sync_sources")
