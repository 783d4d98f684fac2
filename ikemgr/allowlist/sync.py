"""The sync core: fetch → read the store → validate → diff → valve → apply in one transaction → on_change.

With the directory check enabled, its suspensions are written in that same transaction.
The store is read before validation so that an entry equal, character for character, to a
plain grant the same identity grammar accepted before (its fingerprint is stored with the
source) skips the grammar; every other entry, and all of them after a grammar change,
is checked in full.

The live-session step is injected (``on_change``) so this module knows nothing about
charon or the kernel: the command wires in the reconcile path that ``watch`` uses. It is
called after the commit whenever something changed (grants or suspensions) and should
re-read ``Store.active_pairs(now)``; the outcome tells it what was revoked.
Ordering is the safety argument: every source is fetched completely before the store
is read, the valve looks at the complete plan, and only then is anything written —
so an unreachable source, a query error or a truncated file leaves the store as it was.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ikemgr.allowlist.snapshot import note_revoked
from ikemgr.allowlist.store.repository import Store
from ikemgr.config.schema import Config
from ikemgr.core.grants import (
    Grant,
    RawRow,
    SyncPlan,
    check_suspension_valve,
    check_valve,
    diff,
    newly_suspended,
    validate,
)
from ikemgr.core.identity import IdentityGrammar
from ikemgr.errors import BackendUnavailable, IkemgrError
from ikemgr.fsio import held

log = logging.getLogger("ikemgr.allowlist")

#: the live-session step, called after the commit with what was applied
OnChange = Callable[["SyncOutcome"], None]
Fetch = Callable[[], Mapping[str, Sequence[RawRow]]]
#: the directory check: accounts → {account: "ok" | "missing" | "disabled"}
CheckAccounts = Callable[[Iterable[str]], dict[str, str]]


@dataclass(frozen=True)
class SyncOutcome:
    plan: SyncPlan
    fetched: dict[str, int]
    applied: bool
    dry_run: bool
    reconciled: bool = False
    #: set when the store was updated but applying it to live sessions failed
    reconcile_error: str | None = None
    #: directory check (None when not enabled): status per account, grants suspended/resumed
    accounts: dict[str, str] | None = None
    to_suspend: tuple[str, ...] = ()
    suspended: tuple[Grant, ...] = ()
    resumed: tuple[Grant, ...] = ()

    def revoked_pairs(self) -> frozenset[tuple[str, int]]:
        """Pairs that lost their grant in this sync: removed, expired or suspended."""
        return self.plan.revoked_pairs() | frozenset(g.pair for g in self.suspended)


def journal_revocations(cfg: Config, store: Store, pairs: Iterable[tuple[str, int]]) -> None:
    """After a commit that revoked grants: journal the pairs no longer in force beside this
    host's allow-list snapshot (``snapshot.note_revoked``). A pair another grant still holds
    is left out; if the store cannot say (it just went away), all of them go in."""
    revoked = frozenset(pairs)
    if not revoked:
        return
    try:
        still = store.active_among(revoked, datetime.now(UTC))
    except BackendUnavailable:
        still = frozenset()
    note_revoked(cfg.policy.state_dir, revoked - still)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while one sync builds its lists.

    A sync of 100,000 grants allocates about a million objects, none of them in reference
    cycles; the collector would scan them again and again as they pile up (measured: a
    quarter of the sync's time). Reference counting frees them as usual; collection
    resumes when the sync ends.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run_sync(cfg: Config, store: Store, fetch: Fetch, now: datetime, *, actor: str, dry_run: bool = False,
             force: bool = False, on_change: OnChange | None = None, lock: bool = True,
             check_accounts: CheckAccounts | None = None) -> SyncOutcome:
    """One sync. Raises BackendUnavailable (source/ldap/db), Refused (valve, lock) before any write."""
    local = (held(cfg.sync.lock_file, cfg.sync.lock_timeout,
                  "another sync holds {path} (waited {timeout:g} s); try again")
             if lock and not dry_run else nullcontext())
    shared = store.shared_lock(cfg.sync.lock_timeout) if lock and not dry_run else nullcontext()
    with local, shared, _gc_paused():
        try:
            fetched = fetch()
        except BackendUnavailable as e:
            detail = e.message.removeprefix(f"{e.backend} unavailable: ")
            raise BackendUnavailable(e.backend, f"{detail}; nothing changed, the store keeps "
                                     "the last good list") from None
        entries = [e for batch in fetched.values() for e in batch]
        grammar = IdentityGrammar.of(cfg)
        names = tuple(fetched)
        current = store.source_view(names)
        # an entry equal to a plain grant that this grammar checked before is not checked again
        fingerprint = grammar.fingerprint
        known = {n: texts for n, texts in current.plain.items() if current.grammars.get(n) == fingerprint}
        # sources whose grants no record says this grammar checked: the fingerprint is written below
        unchecked = [n for n in names if n not in known]
        for n in unchecked:
            if current.plain.get(n) or n in current.grammars:
                log.info("source %s: its stored grants were checked by another identity grammar "
                         "(or by an older ikemgr); checking every entry", n,
                         extra={"fields": {"event": "sync-grammar-changed", "source": n}})
        validated = validate(entries, grammar, now, known)
        plan = diff(current.rows, validated, now, names, current.plain)
        counts = {name: len(batch) for name, batch in fetched.items()}
        status: dict[str, str] | None = None
        to_suspend: list[str] = []
        if check_accounts is not None:
            # every external read happens before the first write
            holders = store.granted_accounts() | {g.account for g in plan.added}
            try:
                status = check_accounts(holders)
            except BackendUnavailable as e:
                detail = e.message.removeprefix(f"{e.backend} unavailable: ")
                raise BackendUnavailable(e.backend, f"{detail}; nothing changed") from None
            to_suspend = newly_suspended(status, store.account_statuses())
        if dry_run:
            return SyncOutcome(plan, counts, applied=False, dry_run=True, accounts=status,
                               to_suspend=tuple(to_suspend))
        check_valve(plan, cfg.sync.max_removal_share, force)
        if status is not None:
            check_suspension_valve(len(to_suspend), len(status), cfg.sync.max_removal_share, force)
        flipped: list[Grant] = []
        if plan.changed or status or unchecked:
            vlans = [(v.number, v.description) for v in cfg.vlans]
            flipped = store.apply(plan, actor, now, known_vlans=vlans, account_status=status,
                                  grammar=fingerprint)
        # the three 100,000-entry views are done with; freed here, the live reconcile below
        # (which reads the whole allow-list again) reuses their memory instead of adding to
        # the peak RSS
        del fetched, entries, validated, current, known
    suspended = tuple(g for g in flipped if g.suspended)
    resumed = tuple(g for g in flipped if not g.suspended)
    done = SyncOutcome(plan, counts, applied=plan.changed or bool(flipped), dry_run=False, accounts=status,
                       to_suspend=tuple(to_suspend), suspended=suspended, resumed=resumed)
    if done.applied:  # committed: an outage's snapshot must not bring these back
        journal_revocations(cfg, store, done.revoked_pairs())
    if not done.applied or on_change is None:
        return done
    try:
        with _gc_paused():  # the live reconcile reads the whole allow-list again
            on_change(done)
    except IkemgrError as e:
        return replace(done, reconcile_error=e.message)
    return replace(done, reconciled=True)
