"""Initial allow-list schema: accounts, lab VLANs, grants, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ikemgr.allowlist.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ikemgr_accounts",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="unknown"),
        sa.Column("checked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_ikemgr_accounts"),
    )
    op.create_table(
        "ikemgr_vlans",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("owner", sa.String(200), nullable=False, server_default=""),
        sa.Column("contact", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_ikemgr_vlans"),
    )
    op.create_table(
        "ikemgr_grants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("vlan", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=True),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("note", sa.String(200), nullable=False, server_default=""),
        sa.Column("suspended", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ikemgr_grants"),
        sa.ForeignKeyConstraint(["account"], ["ikemgr_accounts.name"],
                                name="fk_ikemgr_grants_account_ikemgr_accounts"),
        sa.ForeignKeyConstraint(["vlan"], ["ikemgr_vlans.number"],
                                name="fk_ikemgr_grants_vlan_ikemgr_vlans"),
        sa.UniqueConstraint("account", "vlan", "source", name="uq_ikemgr_grants_key"),
    )
    op.create_index("ix_ikemgr_grants_source", "ikemgr_grants", ["source"])
    op.create_index("ix_ikemgr_grants_vlan", "ikemgr_grants", ["vlan"])
    op.create_table(
        "ikemgr_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("account", sa.String(128), nullable=True),
        sa.Column("vlan", sa.BigInteger, nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ikemgr_audit"),
    )
    op.create_index("ix_ikemgr_audit_at", "ikemgr_audit", ["at"])
    op.create_index("ix_ikemgr_audit_account", "ikemgr_audit", ["account"])


def downgrade() -> None:
    op.drop_table("ikemgr_audit")
    op.drop_table("ikemgr_grants")
    op.drop_table("ikemgr_vlans")
    op.drop_table("ikemgr_accounts")
