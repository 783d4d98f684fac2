"""THE one apply path: gather → core.policy.desired_state → core.policy_diff.diff → backend.apply.

``watch`` (VICI events), ``hook`` (updown), ``reconcile`` and ``status`` (operator, dry
run), ``sync`` (after a committed change) and the periodic/start-up reconcile all end
in ``Engine._reconcile``: one decision, one diff, one apply, under one lock. A full
reconcile re-reads the kernel and replaces the SA index with charon's ``list-sas``; an
event batch changes the SA index and reconciles only the VIPs it touched, against the
in-memory index of owned rules (a full rule dump costs ~0.26 s at 2,000 rules, far too
much per event).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from ikemgr.adapters.conntrack import ConntrackFlusher
from ikemgr.adapters.policy.base import PolicyBackend
from ikemgr.config.schema import Config
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import AllowList, Decision, Outcome, Sa, SaUpdate, UserRule
from ikemgr.core.policy import describe, desired_state, holders_of
from ikemgr.core.policy_diff import Plan, apply_counted, diff, tables_after, vlans_in_use
from ikemgr.core.policy_diff import apply as plan_apply
from ikemgr.engine.coordination import Generation, Lock
from ikemgr.errors import ApplyFailed, BackendUnavailable
from ikemgr.log import lines_held, log_event, log_fields

if TYPE_CHECKING:  # prometheus_client costs ~0.05 s of CPU at every command start
    from ikemgr.metrics import Metrics

log = logging.getLogger("ikemgr.policy")


@dataclass
class Report:
    plan: Plan
    decisions: tuple[Decision, ...]
    full: bool
    stray: int = 0
    seconds: float = 0.0
    applied: bool = False
    allow_stale: bool = False
    #: the owned-rule index after a full pass or a dry run (an event batch leaves it empty:
    #: copying 10,000 entries per batch was an O(users) cost on every event)
    owned_after: dict[IPv4Address, UserRule] = field(default_factory=dict)


class Engine:
    """Holds the SA index and the owned-rule index; every change goes through ``_reconcile``."""

    def __init__(self, cfg: Config, backend: PolicyBackend, allow: AllowList, *,
                 lock: Lock | None = None, generation: Generation | None = None,
                 flusher: ConntrackFlusher | None = None, metrics: Metrics | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 long_lived: bool = False) -> None:
        self.cfg = cfg
        #: watch keeps its index and never announces its own changes; one-shot commands
        #: (hook, reconcile) bump the generation so a running watch re-reads the kernel
        self.long_lived = long_lived
        self.backend = backend
        self.allow = allow
        self.lock = lock
        self.generation = generation
        self.flusher = flusher
        self.metrics = metrics
        self.clock = clock
        self.grammar = IdentityGrammar.of(cfg)
        self.sas: dict[str, Sa] = {}
        self.by_vip: dict[IPv4Address, set[str]] = {}
        self.owned: dict[IPv4Address, UserRule] = {}
        # table id → owned VIPs in it: vlans_in_use(owned), kept so by apply_counted
        self._use: dict[int, int] = {}
        self.allowed: frozenset[tuple[str, int]] | None = None
        self.revoked: set[tuple[str, int]] = set()
        self._kernel_known = False
        self._seen_generation: str | None = None
        self._logged: dict[str, tuple[str, str, int | None]] = {}
        self._ensured = False
        self.applied_batches = 0
        self._holding = False

    # ---------------------------------------------------------------- inputs
    def refresh_allow(self) -> bool:
        """Re-read the allow-list; True when it changed. Keeps the old one on outage."""
        try:
            pairs = self.allow.active_pairs(self.clock())
        except BackendUnavailable as e:
            if self.allowed is None:
                raise
            log.warning("allow-list unavailable, keeping the last one: %s", e.message)
            return False
        changed = pairs != self.allowed
        if changed and self.allowed is not None:
            self.revoked |= self.allowed - pairs
        self.allowed = pairs
        return changed

    def allow_next_change(self) -> float | None:
        """Seconds until the allow-list changes by the clock alone (a grant starts or ends);
        None when no grant will. Unknown (source down, no snapshot) is 0: read again soon."""
        now = self.clock()
        try:
            at = self.allow.next_change(now)
        except BackendUnavailable:
            return 0.0
        if at is None:
            return None
        return max(0.0, (at - now).total_seconds())

    def take_revoked(self) -> list[str]:
        """Live SAs whose pair left the allow-list since the last call (``sync.terminate_revoked``).

        ``watch`` asks after each allow-list change and terminates them over VICI, so every
        gateway on a shared database acts on a revocation, not only the one that ran the sync.
        """
        revoked, self.revoked = self.revoked, set()
        if not revoked:
            return []
        return holders_of(self.sas.values(), frozenset(revoked), self.cfg, self.grammar)

    def _index_put(self, sa: Sa) -> None:
        # an updated SA keeps its logged decision: only a changed decision is logged again
        self._index_drop(sa.uniqueid, forget=False)
        self.sas[sa.uniqueid] = sa
        for v in sa.vips:
            self.by_vip.setdefault(v, set()).add(sa.uniqueid)

    def _index_drop(self, uid: str, *, forget: bool = True) -> Sa | None:
        old = self.sas.pop(uid, None)
        if old is not None:
            for v in old.vips:
                holders = self.by_vip.get(v)
                if holders is not None:
                    holders.discard(uid)
                    if not holders:
                        del self.by_vip[v]
            if forget:
                self._logged.pop(uid, None)
        return old

    def replace_sas(self, sas: Iterable[Sa]) -> None:
        self.sas.clear()
        self.by_vip.clear()
        for sa in sas:
            self._index_put(sa)
        live = set(self.sas)
        for uid in list(self._logged):
            if uid not in live:
                del self._logged[uid]

    # ---------------------------------------------------------------- entry points
    def full(self, sas: Iterable[Sa] | None, *, dry_run: bool = False,
             leases: Mapping[IPv4Address, str] | None = None) -> Report:
        """Start-up, reconnect, SIGHUP, periodic: charon's SA list (and, when given, its pool
        leases, read right after it) against the kernel."""
        try:
            if self.allowed is None:
                self.refresh_allow()
            if sas is not None:
                self.replace_sas(sas)
            report = self._locked(lambda: self._reconcile(None, full=True, dry_run=dry_run, leases=leases))
        except (ApplyFailed, BackendUnavailable):
            if self.metrics is not None and not dry_run:
                self.metrics.last_reconcile_ok.set(0)
            raise
        if self.metrics is not None and not dry_run:
            self.metrics.last_reconcile.set(time.time())
            self.metrics.last_reconcile_ok.set(1)
            self.metrics.last_reconcile_corrections.set(len(report.plan.add) + len(report.plan.remove)
                                                        + report.stray)
        return report

    def recompute(self) -> Report:
        """Allow-list changed: every SA in the index again, against the owned index."""
        return self._locked(lambda: self._reconcile(None, full=False, dry_run=False))

    def invalidate(self) -> None:
        """After a failed apply: trust nothing, re-read the kernel on the next reconcile."""
        self._kernel_known = False
        self._ensured = False

    def events(self, updates: Iterable[SaUpdate], received: float | None = None,
               touch: Iterable[IPv4Address] = ()) -> Report | None:
        """An event batch: update the SA index, reconcile the VIPs it touched.

        ``touch`` adds VIPs to reconcile even if no known SA held them (the hook's "down"
        for an SA it has no record of: its VIP's policy must still go).
        """
        dirty: set[IPv4Address] = set(touch)
        for u in updates:
            old = self.sas.get(u.sa.uniqueid)
            if u.present:
                if old is not None and old == u.sa:
                    continue
                self._index_put(u.sa)
                dirty.update(u.sa.vips)
            elif old is not None:
                self._index_drop(u.sa.uniqueid)
            else:
                continue  # "down" of an SA never seen up: a half-open SA, nothing to do
            if old is not None:
                dirty.update(old.vips)
        if not dirty:
            return None
        if self.allowed is None:
            self.refresh_allow()
        report = self._locked(lambda: self._reconcile(frozenset(dirty), full=False, dry_run=False))
        if received is not None and self.metrics is not None and report.applied:
            self.metrics.latency.observe(time.monotonic() - received)
        return report

    # ---------------------------------------------------------------- the one path
    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the policy lock across several engine calls (the hook's read-decide-save).

        Inside, the engine's own calls do not take the lock again (flock is per open file,
        so a second acquire would succeed anyway; this keeps one acquire per block).
        """
        if self.lock is None or self._holding:
            yield
            return
        with self.lock:
            self._holding = True
            try:
                yield
            finally:
                self._holding = False

    def _locked(self, fn: Callable[[], Report]) -> Report:
        # one pass, one write of its log lines (10,000 decisions at a start-up reconcile)
        with lines_held():
            if self.lock is None or self._holding:
                return fn()
            with self.lock:
                return fn()

    def _reconcile(self, scope: frozenset[IPv4Address] | None, *, full: bool, dry_run: bool,
                   leases: Mapping[IPv4Address, str] | None = None) -> Report:
        t0 = time.perf_counter()
        if not self._ensured and not dry_run:
            self.backend.ensure()
            self._ensured = True
        stray = 0
        gen = self.generation.read() if self.generation is not None else None
        if full or not self._kernel_known or (gen is not None and gen != self._seen_generation):
            try:
                view = self.backend.read()
            except BackendUnavailable:
                # a failed read is never an empty answer: trust nothing, and set the
                # backend up again on the retry (a map deleted behind us comes back)
                self.invalidate()
                raise
            self.owned = dict(view.rules)
            self._use = vlans_in_use(self.owned)
            stray = len(view.stray)
            self._kernel_known = True
        assert self.allowed is not None
        if scope is None:
            sas: Iterable[Sa] = self.sas.values()
        else:
            uids = set().union(*(self.by_vip.get(v, set()) for v in scope))
            sas = [self.sas[u] for u in uids]
        # leases are a snapshot taken with list-sas: only a full reconcile compares against them
        desired = desired_state(sas, self.allowed, self.cfg, self.grammar, leases if full else None)
        plan = diff(desired.rules, self.owned, scope)
        self._log_decisions(desired.decisions)
        report = Report(plan, desired.decisions, full, stray,
                        allow_stale=bool(getattr(self.allow, "stale", False)))
        if dry_run:
            report.owned_after = plan_apply(plan, self.owned)
            report.seconds = time.perf_counter() - t0
            return report
        if not plan.empty or stray:
            # O(batch), not O(users): the index changes in place once the kernel took the plan
            tables = tables_after(plan, self.owned, self._use) if self.backend.needs_tables else frozenset()
            self.backend.apply(plan, tables)
            apply_counted(plan, self.owned, self._use)
            report.applied = True
            self.applied_batches += 1
            if self.generation is not None and not self.long_lived:
                gen = self.generation.bump()
            # one batch = one atomic kernel change (marks: one nft transaction)
            n = self.applied_batches
            for r in plan.remove:
                log_event("rule removed", event="rule-remove", vip=str(r.vip), vlan=r.vlan, table=r.table_id,
                     batch=n)
            for r in plan.add:
                log_event("rule added", event="rule-add", vip=str(r.vip), vlan=r.vlan, table=r.table_id,
                          batch=n)
            if self.flusher is not None:
                self.flusher.flush(plan.changed_vips)
            if self.metrics is not None:
                self.metrics.changes.labels(op="add").inc(len(plan.add))
                self.metrics.changes.labels(op="remove").inc(len(plan.remove))
                if full:
                    self.metrics.corrections.inc(len(plan.add) + len(plan.remove) + stray)
        self._seen_generation = gen
        if self.metrics is not None:
            self.metrics.set_sessions({self._vlan_of(t): n for t, n in self._use.items()})
        if full:
            report.owned_after = dict(self.owned)
        report.seconds = time.perf_counter() - t0
        if full:
            log_event("reconciled", event="reconcile", sas=len(self.sas), rules=len(self.owned),
                 added=len(plan.add), removed=len(plan.remove), stray=stray,
                 ms=round(report.seconds * 1000, 2))
        return report

    def _vlan_of(self, table_id: int) -> int:
        for v in self.cfg.vlans:
            if v.table_id == table_id:
                return v.number
        return table_id

    def _log_decisions(self, decisions: Iterable[Decision]) -> None:
        """One line per decision that is new or changed (not per event or per reconcile)."""
        for d in decisions:
            key = (str(d.outcome), d.identity, d.vlan)
            if self._logged.get(d.uniqueid) == key:
                continue
            self._logged[d.uniqueid] = key
            if self.metrics is not None:
                self.metrics.decisions.labels(outcome=str(d.outcome)).inc()
            level = logging.WARNING if d.outcome is Outcome.REJECTED_IDENTITY else logging.INFO
            log_fields(log, level, "decision", describe(d))
