"""The store's tables (SQLAlchemy Core metadata), shared by the repository and the migrations.

Natural keys (account name, VLAN management number) keep the hot query — the pairs in
force now — a single-table scan with no join. Nothing here is local to one gateway:
several gateways can share one PostgreSQL database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

from ikemgr.allowlist.store.version import VERSION_TABLE

__all__ = ["VERSION_TABLE", "accounts", "audit", "grants", "metadata", "sync_sources", "vlans"]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps them naive, so attach UTC on the way back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

accounts = Table(
    "ikemgr_accounts", metadata,
    Column("name", String(128), primary_key=True),
    Column("status", String(16), nullable=False, server_default="unknown"),  # ok|missing|disabled|unknown
    Column("checked_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

vlans = Table(
    "ikemgr_vlans", metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),  # management number
    Column("name", String(200), nullable=False, server_default=""),
    Column("owner", String(200), nullable=False, server_default=""),
    Column("contact", String(200), nullable=False, server_default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

grants = Table(
    "ikemgr_grants", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(128), ForeignKey("ikemgr_accounts.name"), nullable=False),
    Column("vlan", BigInteger, ForeignKey("ikemgr_vlans.number"), nullable=False),
    Column("source", String(64), nullable=False),
    Column("valid_from", UTCDateTime(), nullable=True),
    Column("valid_until", UTCDateTime(), nullable=True),
    Column("note", String(200), nullable=False, server_default=""),
    Column("suspended", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("account", "vlan", "source", name="uq_ikemgr_grants_key"),
    Index("ix_ikemgr_grants_source", "source"),
    Index("ix_ikemgr_grants_vlan", "vlan"),
)

audit = Table(
    "ikemgr_audit", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),  # who: user@host or sync@host
    Column("action", String(32), nullable=False),  # grant.add|grant.remove|grant.expire|grant.update|...
    Column("account", String(128), nullable=True),
    Column("vlan", BigInteger, nullable=True),
    Column("source", String(64), nullable=True),
    Column("before", Text, nullable=True),  # JSON of the grant before, or NULL
    Column("after", Text, nullable=True),  # JSON of the grant after, or NULL
    Index("ix_ikemgr_audit_at", "at"),
    Index("ix_ikemgr_audit_account", "account"),
)

#: per synced source, the fingerprint of the identity grammar that checked its stored grants
sync_sources = Table(
    "ikemgr_sync_sources", metadata,
    Column("source", String(64), primary_key=True),
    Column("grammar", String(64), nullable=False),
    Column("synced_at", UTCDateTime(), nullable=False),
)
