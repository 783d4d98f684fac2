"""The allow-list's last good answer, on disk: served while the database is away.

An outage must not disconnect every lab user, nor let anyone new in: each good answer
is saved atomically, and while the source is unavailable the snapshot is served and
marked ``stale``.

Nor may a revocation come back with an outage. Whatever revokes grants from this host
without reading the whole list again (``ikemgr sync``, ``ikemgr grant remove``) journals
the pairs beside the snapshot after its commit (``note_revoked``). Journal entries and
snapshots are ordered by a sequence number, not by the clock: a reader notes the
journal's number before it reads the source, so an entry with a higher number may be
missing from its answer, and a served snapshot leaves those pairs out. Saving a snapshot
prunes the entries it has seen; an older read never replaces a newer snapshot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ikemgr.core.model import AllowList
from ikemgr.errors import BackendUnavailable, IkemgrError
from ikemgr.fsio import atomic_write, held

log = logging.getLogger("ikemgr.state")


SNAPSHOT_FILE = "allow-list.snapshot.json"
#: the revocation journal: a header line {"seq": N, "snapshot_seq": M}, then [seq, account, vlan]
REVOKED_FILE = "allow-list.revoked"
#: how long a journal writer waits for another (each holds the lock for one small rewrite)
JOURNAL_LOCK_TIMEOUT = 10.0


@dataclass
class Journal:
    """Pairs revoked on this host, each with the number of its journal write (the last one).

    ``seq`` is the number of the last write; ``snapshot_seq`` the number the saved snapshot
    was read at (the entries up to it are in that snapshot, or their pairs left it).
    """

    seq: int = 0
    snapshot_seq: int = -1
    entries: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def read(cls, state_dir: Path) -> Journal:
        """Raises OSError when the file is there but cannot be read (the caller decides)."""
        try:
            lines = (state_dir / REVOKED_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return cls()
        j = cls()
        for n, line in enumerate(lines):
            try:
                if n == 0:
                    head = json.loads(line)
                    j.seq, j.snapshot_seq = int(head["seq"]), int(head["snapshot_seq"])
                    continue
                seq, account, vlan = json.loads(line)
                j.entries[(str(account), int(vlan))] = int(seq)
            except (ValueError, TypeError, KeyError):
                log.warning("%s line %d: unreadable, skipped", state_dir / REVOKED_FILE, n + 1)
        # the number only grows, a damaged header included: the next write is after every entry
        j.seq = max(j.seq, *j.entries.values()) if j.entries else j.seq
        return j

    def after(self, seq: int) -> set[tuple[str, int]]:
        return {p for p, n in self.entries.items() if n > seq}

    def write(self, state_dir: Path) -> None:
        self.entries = {p: n for p, n in self.entries.items() if n > self.snapshot_seq}
        lines = [json.dumps({"seq": self.seq, "snapshot_seq": self.snapshot_seq})]
        lines += [json.dumps([n, a, v], ensure_ascii=False) for (a, v), n in sorted(self.entries.items())]
        atomic_write(state_dir / REVOKED_FILE, ("\n".join(lines) + "\n").encode("utf-8"), 0o600)


def journal_lock(state_dir: Path) -> AbstractContextManager[None]:
    """Held to change the journal, or the snapshot with it."""
    return held(state_dir / f"{REVOKED_FILE}.lock", JOURNAL_LOCK_TIMEOUT,
                "the revocation journal lock {path} is held (gave up after {timeout:g} s)")


def note_revoked(state_dir: Path, pairs: Iterable[tuple[str, int]]) -> None:
    """Journal pairs just revoked in the store (call it after the commit); never raises."""
    new = set(pairs)
    if not new:
        return
    try:
        with journal_lock(state_dir):
            j = Journal.read(state_dir)
            j.seq += 1
            j.entries.update(dict.fromkeys(new, j.seq))
            j.write(state_dir)
    except (OSError, IkemgrError) as e:
        log.warning("cannot journal %d revoked pairs in %s: %s (until the next full read of the "
                    "allow-list, a snapshot served in an outage may still hold them)", len(new),
                    state_dir / REVOKED_FILE, getattr(e, "message", e))


def _journal_seq(state_dir: Path) -> tuple[int, bool]:
    """The journal's number now, and whether it holds entries a saved snapshot has not seen."""
    try:
        j = Journal.read(state_dir)
    except OSError:
        return -1, True
    return j.seq, bool(j.entries)


class SnapshotAllowList:
    """Wraps the real source: saves each good answer, serves the last one during outages."""

    def __init__(self, source: AllowList, state_dir: Path) -> None:
        self.source = source
        self.path = state_dir / SNAPSHOT_FILE
        self.stale = False
        self._last: frozenset[tuple[str, int]] | None = None

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        # a source that reads pairs and ends together (the store) is read once; its ends
        # are what a changed answer's snapshot saves
        both = getattr(self.source, "allow_list", None)
        ends: Mapping[tuple[str, int], datetime] | None = None
        seq, pending = _journal_seq(self.path.parent)  # before the read: what it has seen
        try:
            if both is not None:
                pairs, ends = both(now)
            else:
                pairs = self.source.active_pairs(now)
        except BackendUnavailable as e:
            snap = self._load()
            if snap is None:
                raise
            if not self.stale:
                log.warning("allow-list source down (%s): serving the snapshot of %s", e.message,
                            snap[1])
            self.stale = True
            # a grant that ends during the outage ends on time: its pair leaves the snapshot
            return frozenset(p for p in snap[0] if p not in snap[2] or snap[2][p] > now)
        self.stale = False
        # journal entries the saved snapshot has not seen: this answer has, save it
        if pairs != self._last or pending:
            self._save(pairs, now, ends, seq)
            self._last = pairs
        return pairs

    def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
        snap = self._load()
        return dict(snap[2]) if snap is not None else {}

    def next_change(self, now: datetime) -> datetime | None:
        """The source's answer; during an outage the next end the snapshot knows."""
        try:
            return self.source.next_change(now)
        except BackendUnavailable:
            snap = self._load()
            later = [t for t in snap[2].values() if t > now] if snap is not None else []
            return min(later) if later else None

    def _save(self, pairs: frozenset[tuple[str, int]], now: datetime,
              ends: Mapping[tuple[str, int], datetime] | None = None, seq: int = -1) -> None:
        if ends is None:
            try:
                ends = self.source.pair_ends(now)
            except BackendUnavailable as e:  # the list without ends is still better than none
                log.warning("allow-list source: grant ends unreadable (%s); the snapshot keeps the pairs "
                            "without them", e.message)
                ends = {}
        # compact, without ``indent``: an indent sends json.dumps to its pure-Python encoder,
        # which took ~0.5 s of CPU for 100,000 pairs in every `ikemgr sync` live reconcile
        # in set order, not sorted: only _load reads the file, into sets (sorting 100,000
        # pairs was 0.05 s of every live reconcile after a sync)
        body = {"taken": now.isoformat(), "seq": seq, "pairs": list(pairs),
                "ends": [(a, v, t.isoformat()) for (a, v), t in ends.items() if (a, v) in pairs]}
        data = (json.dumps(body, separators=(",", ":")) + "\n").encode("utf-8")
        state_dir = self.path.parent
        try:
            with journal_lock(state_dir):
                j = Journal.read(state_dir)
                if seq < j.snapshot_seq and self.path.exists():
                    return  # another process saved a later read meanwhile: it stays
                atomic_write(self.path, data, 0o600)
                if j.seq and (seq > j.snapshot_seq or j.entries):  # a journal in use
                    j.snapshot_seq = max(seq, j.snapshot_seq)
                    j.write(state_dir)  # the entries this read has seen go
        except (OSError, IkemgrError) as e:
            log.warning("cannot save the allow-list snapshot %s: %s", self.path, getattr(e, "message", e))

    def _load(self) -> tuple[frozenset[tuple[str, int]], str, dict[tuple[str, int], datetime]] | None:
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
            pairs = frozenset((str(a), int(v)) for a, v in body["pairs"])
            ends = {(str(a), int(v)): datetime.fromisoformat(t) for a, v, t in body.get("ends", [])}
            seq = int(body.get("seq", -1))  # without one: older than every journal entry
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            revoked = Journal.read(self.path.parent).after(seq)
        except OSError as e:  # it may hold a revocation: serving without it could reopen one
            log.error("cannot read the revocation journal in %s: %s; no snapshot is served",
                      self.path.parent, e)
            return None
        return (pairs - revoked if revoked else pairs), str(body.get("taken", "?")), ends
