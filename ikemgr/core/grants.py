"""The allow-list as values: fetched entries → validated grants → a sync plan.

Pure: no database, no files, no clock (``now`` is always passed in). Sources hand over
``RawEntry`` values exactly as they read them (text, bytes, whatever a database driver
returned); everything untrusted is decided here, once, with the same identity grammar
that ``watch`` uses. The plan is what ``sync --dry-run`` prints and what the store
applies in one transaction; the mass-revocation valve looks only at the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import NamedTuple

from ikemgr.core.identity import IdentityGrammar, shown
from ikemgr.errors import IdentityRejected, Refused

#: Source name of grants made by hand (``ikemgr grant add``); sync never touches them.
MANUAL = "manual"
MAX_NOTE = 200

GrantKey = tuple[str, int, str]  # (account, vlan, source)
#: a RawEntry as a bare tuple of its seven fields
RawRow = tuple[str, "str | int", object, object, object, object, object]


class RawEntry(NamedTuple):
    """One entry as a source read it. ``vlan`` is None when ``account`` holds ``account@NNNNNN``.

    ``where`` is an int for a line number ("line N"). A source may hand its entries over
    as bare tuples of these fields (``RawRow``): a list file makes 100,000 of them.
    """

    source: str
    where: str | int
    account: object
    vlan: object = None
    valid_from: object = None
    valid_until: object = None
    note: object = None


#: a grant as plain fields (a stored row): ``Grant`` is one, and so is the bare tuple
GrantRow = tuple[str, int, str, datetime | None, datetime | None, str, bool]


class Grant(NamedTuple):
    """account may use lab VLAN ``vlan`` while valid_from ≤ now < valid_until and not suspended.

    A NamedTuple rather than a dataclass: a sync builds 100,000s of these, and tuple
    construction, hashing and ordering are several times cheaper.
    """

    account: str
    vlan: int
    source: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    note: str = ""
    suspended: bool = False

    @property
    def key(self) -> GrantKey:
        return (self.account, self.vlan, self.source)

    @property
    def pair(self) -> tuple[str, int]:
        return (self.account, self.vlan)

    def expired(self, now: datetime) -> bool:
        return self.valid_until is not None and self.valid_until <= now

    def active(self, now: datetime) -> bool:
        if self.suspended or self.expired(now):
            return False
        return self.valid_from is None or self.valid_from <= now

    def same_terms(self, other: Grant) -> bool:
        return self[3:6] == other[3:6]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A bad entry: where it came from and why; ``shown`` is the escaped, truncated value."""

    source: str
    where: str
    reason: str
    shown: str

    def __str__(self) -> str:
        return f"{self.source} {self.where}: {self.shown} rejected: {self.reason}"


def plain_row(text: str, source: str) -> GrantRow:
    """The plain grant (no window, no note, not suspended) of a canonical ``account@NNNNNN``."""
    account, _, vlan = text.rpartition("@")
    return (account, int(vlan), source, None, None, "", False)


@dataclass(frozen=True)
class Validated:
    """The good grants of a batch of sources and the rest.

    Two lanes. ``plain`` holds, per source, the canonical ``account@NNNNNN`` text of every
    plain grant (no window, no note: what a list file makes, nearly all of a sync): a set of
    strings is what the diff compares with the store's, in C, without a tuple per grant.
    ``general`` holds the others keyed by (account, vlan, source); a key is in one lane only.
    """

    #: grants with a window or a note, as the bare tuple of their Grant fields
    general: Mapping[GrantKey, GrantRow]
    rejected: tuple[Rejection, ...] = ()
    duplicates: int = 0
    #: keys listed by a source with a valid_until already in the past
    source_expired: frozenset[GrantKey] = frozenset()
    plain: Mapping[str, AbstractSet[str]] = field(default_factory=dict)

    @cached_property
    def grants(self) -> dict[GrantKey, GrantRow]:
        """Both lanes as one mapping (a list file's own checks, tests): built on first use."""
        out = {(row := plain_row(t, s))[:3]: row for s, texts in self.plain.items() for t in texts}
        out.update(self.general)
        return out

    def grant(self, key: GrantKey) -> Grant:
        row = self.general.get(key)
        if row is None:
            text = f"{key[0]}@{key[1]}"
            if text not in self.plain.get(key[2], ()):
                raise KeyError(key)
            row = plain_row(text, key[2])
        return Grant._make(row)


def active_pairs(grants: Iterable[GrantRow], now: datetime) -> frozenset[tuple[str, int]]:
    """The (account, vlan) pairs in force at ``now``; the store computes the same in SQL."""
    return frozenset((a, v) for a, v, _, vf, vu, _, susp in grants
                     if not susp and (vu is None or vu > now) and (vf is None or vf <= now))


# --------------------------------------------------------------------------- validation


def as_utc(value: object, what: str) -> datetime | None:
    """A timestamp from a source: None, an aware/naive datetime (naive = UTC) or ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) > 40:
            raise ValueError(f"{what} is not a timestamp")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{what} {shown(text, 40)} is not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{what} is not a timestamp ({type(value).__name__})")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _identity_value(entry: RawEntry) -> object:
    """Join separate account/vlan columns into the one string the grammar checks."""
    if entry.vlan is None:
        return entry.account
    vlan = entry.vlan
    if isinstance(vlan, bool):
        raise IdentityRejected("VLAN column is not a number", shown(vlan))
    if isinstance(vlan, int):
        vlan_text: object = str(vlan)
    elif isinstance(vlan, str | bytes | bytearray):
        vlan_text = vlan
    else:
        raise IdentityRejected(f"VLAN column is not a number ({type(vlan).__name__})", shown(vlan))
    account = entry.account
    if isinstance(account, bytes | bytearray) or isinstance(vlan_text, bytes | bytearray):
        a = bytes(account) if isinstance(account, bytes | bytearray) else str(account).encode()
        v = bytes(vlan_text) if isinstance(vlan_text, bytes | bytearray) else str(vlan_text).encode()
        return a + b"@" + v
    if not isinstance(account, str):
        raise IdentityRejected(f"account column is not text ({type(account).__name__})", shown(account))
    if "@" in account:
        raise IdentityRejected("account column contains '@'", shown(account))
    return f"{account}@{vlan_text}"


def check_note(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"note is not text ({type(value).__name__})")
    if len(value) > MAX_NOTE or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("note is longer than 200 characters or contains control characters")
    return value


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two valid_until values; None means open-ended and wins."""
    if a is None or b is None:
        return None
    return max(a, b)


def _where(where: str | int) -> str:
    return f"line {where}" if type(where) is int else str(where)


def validate(entries: Iterable[RawEntry | RawRow], grammar: IdentityGrammar, now: datetime,
             known: Mapping[str, AbstractSet[str]] | None = None) -> Validated:
    """Check every entry with the identity grammar; keep the good ones, report the rest.

    Duplicates of one (account, vlan) in one source are merged (widest validity), so a
    registration DB listing a pair twice does not make the plan flap.

    ``known`` (per source, the canonical texts of plain grants that this same grammar
    accepted and the store holds: ``Store.source_view``) lets an entry that is exactly one
    of them skip the grammar: it was checked, character for character, when it was stored.
    Everything else, and everything when ``known`` is None, takes the full checks.
    """
    general: dict[GrantKey, GrantRow] = {}
    plain: dict[str, set[str]] = {}
    rejected: list[Rejection] = []
    expired: set[GrantKey] = set()
    duplicates = 0
    vlan_pair = grammar.vlan_pair
    trusted = known or {}
    source_now: str | None = None
    texts: set[str] = set()
    checked: AbstractSet[str] = frozenset()
    text: str | None
    for e in entries:
        source, where, raw, vlan_column, vf, vu, note = e
        if vf is None and vu is None and note is None:
            # the plain lane (nearly every entry of a sync): a canonical text per grant
            if source != source_now:
                source_now = source
                texts = plain.setdefault(source, set())
                checked = trusted.get(source, frozenset())
            if vlan_column is None:
                text = raw if type(raw) is str and raw in checked else None
            elif type(raw) is str and type(vlan_column) is int:  # a SQL source's two columns
                text = f"{raw}@{vlan_column}"
                if text not in checked:
                    text = None
            else:
                text = None
            if text is None:
                try:
                    account, vlan = vlan_pair(raw if vlan_column is None
                                              else _identity_value(RawEntry._make(e)))
                except IdentityRejected as err:
                    rejected.append(Rejection(source, _where(where), err.reason, err.shown))
                    continue
                # an accepted str is canonical already (ASCII digits, no leading zero)
                text = raw if vlan_column is None and type(raw) is str else f"{account}@{vlan}"
            if text in texts:
                duplicates += 1
            else:
                texts.add(text)
            continue
        try:
            account, vlan = vlan_pair(raw if vlan_column is None else _identity_value(RawEntry._make(e)))
        except IdentityRejected as err:
            rejected.append(Rejection(source, _where(where), err.reason, err.shown))
            continue
        try:
            valid_from = as_utc(vf, "valid_from")
            valid_until = as_utc(vu, "valid_until")
            text = check_note(note)
        except ValueError as err:
            rejected.append(Rejection(source, _where(where), str(err), shown(f"{account}@{vlan}")))
            continue
        if valid_from is not None and valid_until is not None and valid_until <= valid_from:
            rejected.append(Rejection(source, _where(where), "valid_until is not after valid_from",
                                      shown(f"{account}@{vlan}")))
            continue
        if valid_from is None and valid_until is None and not text:  # empty columns: plain after all
            listed = plain.setdefault(source, set())
            if (canonical := f"{account}@{vlan}") in listed:
                duplicates += 1
            else:
                listed.add(canonical)
            continue
        key = (account, vlan, source)
        if valid_until is not None and valid_until <= now:
            expired.add(key)
            continue
        g: GrantRow = Grant(account, vlan, source, valid_from, valid_until, text)
        old = general.get(key)
        if old is not None:
            duplicates += 1
            g = _merged(old, g)
        general[key] = g
    # A pair listed both plain and with terms is one grant: the widest validity (the plain
    # entry has none, so it is open on both ends) with the note of the entry that has one.
    for key in list(general):
        text, same_source = f"{key[0]}@{key[1]}", plain.get(key[2])
        if same_source and text in same_source:
            duplicates += 1
            same_source.discard(text)
            general[key] = Grant._make(general[key])._replace(valid_from=None, valid_until=None)
    gone = {k for k in expired - general.keys() if f"{k[0]}@{k[1]}" not in plain.get(k[2], ())}
    return Validated(general, tuple(rejected), duplicates, frozenset(gone), plain)


def _merged(old: GrantRow, new: GrantRow) -> Grant:
    """Two entries of one key in one source: the widest validity, the first one's note."""
    was = Grant._make(old)
    return was._replace(valid_until=_later(was.valid_until, new[4]),
                        valid_from=None if was.valid_from is None or new[3] is None
                        else min(was.valid_from, new[3]))


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class SyncPlan:
    """What a sync would change. ``current`` counts the live grants of the synced sources."""

    added: tuple[Grant, ...] = ()
    removed: tuple[Grant, ...] = ()
    expired: tuple[Grant, ...] = ()
    updated: tuple[tuple[Grant, Grant], ...] = ()
    rejected: tuple[Rejection, ...] = ()
    duplicates: int = 0
    current: int = 0
    unchanged: int = 0
    sources: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.expired or self.updated)

    @property
    def removal_share(self) -> float:
        """Removed (not expired) grants as a share of the live grants before the sync."""
        return len(self.removed) / self.current if self.current else 0.0

    def revoked_pairs(self) -> frozenset[tuple[str, int]]:
        return frozenset(g.pair for g in self.removed + self.expired)

    def granted_pairs(self) -> frozenset[tuple[str, int]]:
        return frozenset(g.pair for g in self.added)

    def per_vlan(self) -> dict[int, dict[str, int]]:
        """Counts per VLAN for the plan table: added / removed / expired / updated."""
        out: dict[int, dict[str, int]] = {}

        def bump(vlan: int, kind: str) -> None:
            row = out.setdefault(vlan, {"added": 0, "removed": 0, "expired": 0, "updated": 0})
            row[kind] += 1

        for g in self.added:
            bump(g.vlan, "added")
        for g in self.removed:
            bump(g.vlan, "removed")
        for g in self.expired:
            bump(g.vlan, "expired")
        for _, g in self.updated:
            bump(g.vlan, "updated")
        return dict(sorted(out.items()))

    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "expired": len(self.expired),
                "updated": len(self.updated), "rejected": len(self.rejected),
                "unchanged": self.unchanged, "current": self.current}


def diff(current: Iterable[GrantRow], desired: Validated, now: datetime,
         sources: Iterable[str] = (), stored_plain: Mapping[str, AbstractSet[str]] | None = None) -> SyncPlan:
    """Compare the stored grants of the synced sources with what the sources now say.

    A stored grant the sources no longer list is *removed*, unless it has already run out
    (or the source lists it with a past valid_until): then it is *expired*, which does not
    count towards the mass-revocation valve. Suspension is the store's business and is
    carried over unchanged.

    ``stored_plain`` (``Store.source_view``) holds the store's plain grants as canonical
    texts per source, beside ``current`` (the others); without it, ``current`` is all of them.
    """
    # The plain lanes first: two sets of strings per source, their differences taken in C
    # (100,000 grants, 1 % changed: a few milliseconds). What is in both is unchanged; only
    # the few left over become rows and go through the comparison below with the rest.
    have = stored_plain or {}
    rows = list(current)
    want: dict[GrantKey, GrantRow] = dict(desired.general)
    same_plain = 0
    for source in have.keys() | desired.plain.keys():
        stored_texts = have.get(source, frozenset())
        listed = desired.plain.get(source, frozenset())
        gone = stored_texts - listed
        same_plain += len(stored_texts) - len(gone)
        rows += [plain_row(t, source) for t in gone]
        for t in listed - stored_texts:
            row = plain_row(t, source)
            want[row[:3]] = row
    # The common case among the rest is a stored grant equal, field for field, to the one
    # the sources list (key, terms and flag: one tuple each, and keys are unique on both
    # sides). Set differences find the few that are not; only those take the comparison.
    stored = set(rows)
    differ = stored.difference(want.values())
    same = len(stored) - len(differ) + same_plain
    by_key = {cur[:3]: Grant._make(cur) for cur in differ}  # either side may hold bare tuples
    added = [Grant._make(g) for g in want.values() if g not in stored and g[:3] not in by_key]
    removed: list[Grant] = []
    expired: list[Grant] = []
    updated: list[tuple[Grant, Grant]] = []
    unchanged = same  # and live, since no desired grant has run out at ``now`` (validate sets those aside)
    live = same
    for key, cur in by_key.items():
        new = want.get(key)
        vu = cur.valid_until
        ran_out = vu is not None and vu <= now
        if not ran_out:
            live += 1
        if new is None:
            if ran_out or key in desired.source_expired:
                expired.append(cur)
            else:
                removed.append(cur)
        elif cur[3:6] == new[3:6]:
            unchanged += 1
        else:
            updated.append((cur, Grant._make(new)._replace(suspended=cur.suspended)))
    return SyncPlan(tuple(sorted(added)), tuple(sorted(removed)), tuple(sorted(expired)),
                    tuple(sorted(updated)), desired.rejected, desired.duplicates, live, unchanged,
                    tuple(sources))


def check_valve(plan: SyncPlan, max_share: float, force: bool) -> None:
    """Refuse a plan that revokes more than ``max_share`` of the live grants, unless forced."""
    if force or plan.removal_share <= max_share:
        return
    raise Refused(
        f"sync would remove {len(plan.removed)} of {plan.current} grants "
        f"({plan.removal_share:.0%} > {max_share:.0%}); nothing changed. "
        "Check the sources, then re-run with --force if this is intended")


def grants_by_source(grants: Mapping[GrantKey, Grant]) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in grants.values():
        out[g.source] = out.get(g.source, 0) + 1
    return out


def newly_suspended(status: Mapping[str, str], before: Mapping[str, str]) -> list[str]:
    """Accounts the directory check would suspend that are not suspended already."""
    return sorted(a for a, s in status.items() if s != "ok" and before.get(a) not in ("missing", "disabled"))


def check_suspension_valve(newly: int, checked: int, max_share: float, force: bool) -> None:
    """The same valve for the directory check: a wrong base DN must not suspend everyone."""
    if force or not checked or newly / checked <= max_share:
        return
    raise Refused(
        f"the account check would suspend {newly} of {checked} accounts "
        f"({newly / checked:.0%} > {max_share:.0%}); nothing changed. "
        "Check the directory settings, then re-run with --force if this is intended")
