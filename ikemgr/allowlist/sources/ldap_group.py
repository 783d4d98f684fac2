"""The directory-group source (``kind: ldap_group``): one group per lab VLAN, members allowed.

Config names each group by its DN (``vlans: {123456: cn=lab-123456,ou=groups,…}``):
an explicit DN can be told missing (noSuchObject → the sync fails) where a search that
finds no group would look like an empty one and revoke everybody.

Members are read from ``member_attribute``:
- ``member`` / ``uniqueMember`` (groupOfNames / groupOfUniqueNames) hold DNs; each DN is
  read (a base-scope search, never a filter built from it) for ``account_attribute``
  (``uid``); every value of it becomes one entry.
- ``memberUid`` (posixGroup) holds the account names themselves.

Values are handed over as the raw bytes the directory sent: the identity grammar in
core.grants decides what is an account (and reports ``a; rm -rf /``, ``.*``, overlong or
non-UTF-8 values with the group and member they came from). A member DN that names no
entry, or an entry without the account attribute, is handed over with an empty account,
so it is reported as rejected, not silently dropped.

All or nothing like every source: server down, bind refused, timeout, TLS failure, a
missing group, a server that sends members in ranges (``member;range=…``) — any of it
raises ``BackendUnavailable('ldap', …)`` and the store keeps its last good list.
"""

from __future__ import annotations

from typing import Any

from ldap3 import BASE, Connection

from ikemgr.adapters.ldap import connection
from ikemgr.config.services import Ldap
from ikemgr.config.sync import LdapGroupSource
from ikemgr.core.grants import RawEntry
from ikemgr.core.identity import shown
from ikemgr.errors import BackendUnavailable

NO_SUCH_OBJECT = 32
INVALID_DN_SYNTAX = 34
#: what a member DN resolves to: the raw account values, or why there are none
Resolved = list[bytes] | str


def _show(value: bytes) -> str:
    """A member value for a report: quoted text if it is UTF-8, escaped bytes otherwise."""
    try:
        return shown(value.decode("utf-8"), 120)
    except UnicodeDecodeError:
        return shown(value, 120)


def _fail(src: LdapGroupSource, detail: str) -> BackendUnavailable:
    return BackendUnavailable("ldap", f"source {src.name}: {detail}")


def _read(conn: Connection, dn: str, attr: str) -> tuple[int, dict[str, Any] | None]:
    """One entry by DN (base scope, presence filter): (result code, raw attributes or None)."""
    conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=[attr])
    code = int(conn.result.get("result", -1))
    entries = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
    return code, (entries[0]["raw_attributes"] if entries else None)


def _values(raw: dict[str, Any], attr: str) -> list[bytes] | None:
    """The raw values of ``attr`` (names are case-insensitive); None if sent in ranges."""
    wanted = attr.lower()
    out: list[bytes] = []
    for name, values in raw.items():
        low = name.lower()
        if low.startswith(wanted + ";range="):
            return None
        if low == wanted:
            out.extend(bytes(v) for v in values)
    return out


def _members(conn: Connection, src: LdapGroupSource, group: str) -> list[bytes]:
    code, raw = _read(conn, group, src.member_attribute)
    if code == NO_SUCH_OBJECT:
        raise _fail(src, f"group {group} does not exist")
    if code != 0 or raw is None:
        raise _fail(src, f"reading group {group} failed: {conn.result.get('description')} "
                    f"{conn.result.get('message') or ''}".strip())
    values = _values(raw, src.member_attribute)
    if values is None:
        raise _fail(src, f"group {group}: the server sends {src.member_attribute} in ranges "
                    "(ranged retrieval is not supported)")
    return values


def _resolve(conn: Connection, src: LdapGroupSource, member: bytes) -> Resolved:
    """A member DN → the raw values of its account attribute, or a reason there are none."""
    try:
        dn = member.decode("utf-8")
    except UnicodeDecodeError:
        return "member DN is not UTF-8"
    code, raw = _read(conn, dn, src.account_attribute)
    if code in (NO_SUCH_OBJECT, INVALID_DN_SYNTAX):
        return "no such entry"
    if code != 0:
        raise _fail(src, f"reading member {shown(dn)} failed: {conn.result.get('description')}")
    values = _values(raw or {}, src.account_attribute)
    if values is None:
        raise _fail(src, f"member {shown(dn)}: {src.account_attribute} sent in ranges")
    return values or f"entry has no {src.account_attribute}"


def fetch_ldap_group(src: LdapGroupSource, ldap: Ldap, timeout: float) -> list[RawEntry]:
    """Every (member, VLAN) of the configured groups as RawEntry values, or BackendUnavailable."""
    out: list[RawEntry] = []
    cache: dict[bytes, Resolved] = {}
    with connection(ldap, src.timeout or timeout, backend="ldap") as conn:
        for vlan, group in sorted(src.vlans.items()):
            for member in _members(conn, src, group):
                where = f"group {group} {src.member_attribute} {_show(member)}"
                if src.member_attribute == "memberUid":
                    out.append(RawEntry(src.name, where, member, vlan))
                    continue
                if member not in cache:
                    cache[member] = _resolve(conn, src, member)
                resolved = cache[member]
                if isinstance(resolved, str):
                    out.append(RawEntry(src.name, f"{where} ({resolved})", "", vlan))
                    continue
                out.extend(RawEntry(src.name, where, account, vlan) for account in resolved)
    return out
