"""Where the allow-list comes from: SQL, list-file and LDAP-group sources, the account check, valves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from ikemgr.config.dburl import DbUrl
from ikemgr.config.types import AbsPath, Dn, LdapAttr, LdapFilter, Strict, Token

_SQL_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


class SqlSource(Strict):
    """A registration database: a query or a view returning columns account, vlan[, valid_until]."""

    kind: Literal["sql"]
    name: Token
    url: DbUrl = Field(description="SQLAlchemy URL of the registration database")
    password_file: AbsPath | None = None
    query: str | None = Field(None, description="SELECT returning account, vlan[, valid_from, valid_until, "
                              "note]; written by the operator, never built from data")
    view: str | None = Field(None, description="a view/table name (schema.name) instead of a query")

    @model_validator(mode="after")
    def _one_of(self) -> SqlSource:
        if (self.query is None) == (self.view is None):
            raise ValueError("give exactly one of query or view")
        if self.view is not None and not _SQL_IDENT_RE.fullmatch(self.view):
            raise ValueError(f"view: {self.view!r} is not a plain [schema.]name")
        return self


class FileSource(Strict):
    """A list file of account@NNNNNN lines (the seed's $USERLIST)."""

    kind: Literal["file"]
    name: Token
    path: AbsPath
    end_marker: str | None = Field(
        None, max_length=64, description="if set, the last non-blank line must equal it (truncation guard)")


def _group_vlan(v: object) -> object:
    """A VLAN number as a mapping key (YAML gives int, JSON gives text): digits, no leading 0."""
    if isinstance(v, bool):
        raise ValueError("a VLAN number must be a number")
    if isinstance(v, str):
        if not (v.isascii() and v.isdigit()) or len(v) > 9 or (len(v) > 1 and v[0] == "0"):
            raise ValueError(f"{v!r} is not a VLAN management number (1-9 digits, no leading 0)")
        return int(v)
    return v


GroupVlan = Annotated[int, BeforeValidator(_group_vlan), Field(ge=1, le=999_999_999)]


class LdapGroupSource(Strict):
    """One directory group per lab VLAN: its members are the accounts allowed on that VLAN.

    Connects with the ``ldap:`` section (uri, StartTLS/ldaps, CA, require_cert, bind DN).
    """

    kind: Literal["ldap_group"]
    name: Token
    vlans: dict[GroupVlan, Dn] = Field(
        min_length=1, description="VLAN number → DN of the group whose members may use it")
    member_attribute: Literal["member", "uniqueMember", "memberUid"] = Field(
        "member", description="member/uniqueMember hold DNs (resolved to account_attribute); "
        "memberUid holds account names")
    account_attribute: LdapAttr = Field(
        "uid", description="attribute of a member entry that holds the account name")
    timeout: Annotated[float, Field(gt=0, le=3600)] | None = Field(
        None, description="seconds for connect and each answer; default: sync.timeout")


SyncSource = Annotated[SqlSource | FileSource | LdapGroupSource, Field(discriminator="kind")]


class AccountCheck(Strict):
    """Suspend (never delete) the grants of accounts missing or disabled in the directory (ldap.*)."""

    enabled: bool = False
    attribute: LdapAttr = Field("uid", description="the attribute that holds the account name")
    base_dn: Dn | None = Field(None, description="default: ldap.base_dn")
    disabled_filter: LdapFilter | None = Field(
        None, description="filter matching disabled accounts; default: ldap.disabled_filter "
        "(the same accounts RADIUS refuses)")


class Sync(Strict):
    """Where the allow-list comes from and the valves that protect it."""

    sources: list[SyncSource] = Field(default_factory=list)
    max_removal_share: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.2, description="refuse a sync removing more than this share of grants unless --force")
    terminate_revoked: bool = Field(False, description="terminate the SA of a user whose grant is revoked")
    lock_file: AbsPath = Path("/run/ikemgr-sync.lock")
    lock_timeout: Annotated[float, Field(ge=0, le=3600)] = Field(
        30, description="seconds to wait for a concurrent sync before giving up")
    timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        30, description="seconds a source may take to connect and answer")
    interval: Annotated[int, Field(ge=60, le=86400)] = Field(
        900, description="seconds between periodic syncs (systemd timer)")
    account_check: AccountCheck = AccountCheck()

    @model_validator(mode="after")
    def _unique_names(self) -> Sync:
        seen: set[str] = set()
        for i, src in enumerate(self.sources):
            if src.name in seen or src.name == "manual":
                raise ValueError(f"sources[{i}].name: {src.name!r} is already used (or reserved)")
            seen.add(src.name)
        return self
