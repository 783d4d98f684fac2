"""The allow-list the engine reads: the store (or ``--allow-file``) behind the last-good snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ikemgr.allowlist.snapshot import SnapshotAllowList
from ikemgr.allowlist.sources.listfile import FileAllowList
from ikemgr.config.schema import Config
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import AllowList


class LazyStore:
    """The SQL store, opened on first use and re-opened after an outage."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._store: Any = None

    def _opened(self) -> Any:
        if self._store is None:
            from ikemgr.allowlist.store import open_store

            self._store = open_store(self.cfg)
        return self._store

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        pairs: frozenset[tuple[str, int]] = self._opened().active_pairs(now)
        return pairs

    def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
        ends: dict[tuple[str, int], datetime] = self._opened().pair_ends(now)
        return ends

    def next_change(self, now: datetime) -> datetime | None:
        at: datetime | None = self._opened().next_change(now)
        return at

    def active_among(self, pairs: frozenset[tuple[str, int]], now: datetime) -> frozenset[tuple[str, int]]:
        found: frozenset[tuple[str, int]] = self._opened().active_among(pairs, now)
        return found

    def allow_list(self, now: datetime) -> tuple[frozenset[tuple[str, int]], dict[tuple[str, int], datetime]]:
        """Both in one read (``Store.allow_list``): what the snapshot in front of this reads."""
        both: tuple[frozenset[tuple[str, int]], dict[tuple[str, int], datetime]] = \
            self._opened().allow_list(now)
        return both


class LivePairs:
    """The store's allow-list as far as some identities need it: charon's live SAs after a sync.

    ``active_pairs`` answers ``Store.active_among`` for these pairs, which decides every one
    of those SAs exactly as the whole list would. Not a snapshot source: a partial answer is
    never saved; an outage raises (the caller reports it, and ``watch`` repairs).
    """

    stale = False

    def __init__(self, cfg: Config, pairs: Iterable[tuple[str, int]]) -> None:
        self.store = LazyStore(cfg)
        self.pairs = frozenset(pairs)

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        if not self.pairs:
            return frozenset()
        return self.store.active_among(self.pairs, now)

    def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
        return {}

    def next_change(self, now: datetime) -> datetime | None:
        return None


def open_allow_list(cfg: Config, grammar: IdentityGrammar,
                    allow_file: Path | None = None) -> SnapshotAllowList:
    """The allow-list the engine reads, with the last-good snapshot in front of it."""
    source: AllowList = (FileAllowList(allow_file, grammar, cfg.sync.max_removal_share) if allow_file
                         else LazyStore(cfg))
    return SnapshotAllowList(source, cfg.policy.state_dir)
