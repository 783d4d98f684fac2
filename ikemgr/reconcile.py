"""THE one apply path: gather → core.policy.desired_state → core.plan.diff → backend.apply.

``watch`` (VICI events), ``hook`` (updown), ``reconcile`` (operator, dry run) and the
periodic/start-up reconcile all end in ``Engine._reconcile``: one decision, one diff,
one apply, under one lock. A full reconcile re-reads the kernel and replaces the SA index
with charon's ``list-sas``; an event batch changes the SA index and reconciles only the
VIPs it touched, against the in-memory index of owned rules (a full rule dump costs
~0.26 s at 2,000 rules, far too much per event).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from ikemgr.adapters import vici as vici_adapter
from ikemgr.adapters.netns import InNetns
from ikemgr.adapters.policy_backend import ConntrackFlusher, MarksBackend, PolicyBackend, RulesBackend
from ikemgr.adapters.state import FileAllowList, Generation, Lock, SnapshotAllowList
from ikemgr.adapters.vici import SaUpdate
from ikemgr.config.schema import Config
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import AllowList, Decision, Outcome, Sa, UserRule
from ikemgr.core.plan import Plan, diff, vlans_in_use
from ikemgr.core.plan import apply as plan_apply
from ikemgr.core.policy import describe, desired_state
from ikemgr.errors import ApplyFailed, BackendUnavailable
from ikemgr.metrics import Metrics

log = logging.getLogger("ikemgr.policy")


# --------------------------------------------------------------------------- logging


class _Formatter(logging.Formatter):
    """One line per record; records with ``fields`` become key=value or JSON."""

    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        if self.as_json:
            body = {"ts": round(record.created, 6), "level": record.levelname.lower(),
                    "logger": record.name, "msg": record.getMessage(), **fields}
            return json.dumps(body, default=str, ensure_ascii=True)
        kv = " ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=True) if not isinstance(v, int) else v}"
                      for k, v in fields.items())
        return f"{record.levelname.lower()} {record.name}: {record.getMessage()}" + (f" {kv}" if kv else "")


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """stderr, one line per record: journald/syslog pick it up from the unit's stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    root = logging.getLogger("ikemgr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _log(msg: str, **fields: Any) -> None:
    log.info(msg, extra={"fields": fields})


# --------------------------------------------------------------------------- allow-list


class _LazyStore:
    """The SQL store, opened on first use and re-opened after an outage."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._store: Any = None

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        if self._store is None:
            from ikemgr.store import open_store

            self._store = open_store(self.cfg)
        pairs: frozenset[tuple[str, int]] = self._store.active_pairs(now)
        return pairs


def open_allow_list(cfg: Config, grammar: IdentityGrammar,
                    allow_file: Path | None = None) -> SnapshotAllowList:
    """The allow-list the engine reads, with the last-good snapshot in front of it."""
    source: AllowList = FileAllowList(allow_file, grammar) if allow_file else _LazyStore(cfg)
    return SnapshotAllowList(source, cfg.policy.state_dir)


# --------------------------------------------------------------------------- the engine


@dataclass
class Report:
    plan: Plan
    decisions: tuple[Decision, ...]
    full: bool
    stray: int = 0
    seconds: float = 0.0
    applied: bool = False
    allow_stale: bool = False
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
        self.grammar = IdentityGrammar(cfg.policy.identity_pattern, cfg.policy.account_pattern)
        self.sas: dict[str, Sa] = {}
        self.by_vip: dict[IPv4Address, set[str]] = {}
        self.owned: dict[IPv4Address, UserRule] = {}
        self.allowed: frozenset[tuple[str, int]] | None = None
        self._kernel_known = False
        self._seen_generation: str | None = None
        self._logged: dict[str, tuple[str, str, int | None]] = {}
        self._ensured = False
        self.applied_batches = 0

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
        self.allowed = pairs
        return changed

    def _index_put(self, sa: Sa) -> None:
        self._index_drop(sa.uniqueid)
        self.sas[sa.uniqueid] = sa
        for v in sa.vips:
            self.by_vip.setdefault(v, set()).add(sa.uniqueid)

    def _index_drop(self, uid: str) -> Sa | None:
        old = self.sas.pop(uid, None)
        if old is not None:
            for v in old.vips:
                holders = self.by_vip.get(v)
                if holders is not None:
                    holders.discard(uid)
                    if not holders:
                        del self.by_vip[v]
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
        if self.allowed is None:
            self.refresh_allow()
        if sas is not None:
            self.replace_sas(sas)
        return self._locked(lambda: self._reconcile(None, full=True, dry_run=dry_run, leases=leases))

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
    def _locked(self, fn: Callable[[], Report]) -> Report:
        if self.lock is None:
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
            view = self.backend.read()
            self.owned = dict(view.rules)
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
            after = plan_apply(plan, self.owned)
            self.backend.apply(plan, after)
            self.owned = after
            report.applied = True
            self.applied_batches += 1
            if self.generation is not None and not self.long_lived:
                gen = self.generation.bump()
            # one batch = one atomic kernel change (marks: one nft transaction)
            n = self.applied_batches
            for r in plan.remove:
                _log("rule removed", event="rule-remove", vip=str(r.vip), vlan=r.vlan, table=r.table_id,
                     batch=n)
            for r in plan.add:
                _log("rule added", event="rule-add", vip=str(r.vip), vlan=r.vlan, table=r.table_id, batch=n)
            if self.flusher is not None:
                self.flusher.flush(plan.changed_vips)
            if self.metrics is not None:
                self.metrics.changes.labels(op="add").inc(len(plan.add))
                self.metrics.changes.labels(op="remove").inc(len(plan.remove))
                if full:
                    self.metrics.corrections.inc(len(plan.add) + len(plan.remove) + stray)
        self._seen_generation = gen
        if self.metrics is not None:
            self.metrics.set_sessions({self._vlan_of(t): n for t, n in vlans_in_use(self.owned).items()})
        report.owned_after = dict(self.owned)
        report.seconds = time.perf_counter() - t0
        if full:
            _log("reconciled", event="reconcile", sas=len(self.sas), rules=len(self.owned),
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
            log.log(level, "decision", extra={"fields": describe(d)})


def make_backend(cfg: Config, netns: str | None) -> PolicyBackend:
    ex = InNetns(netns)
    return RulesBackend(cfg, ex) if cfg.policy.backend == "rules" else MarksBackend(cfg, ex)


def build_engine(cfg: Config, *, netns: str | None = None, allow_file: Path | None = None,
                 lock_file: Path | None = None, metrics: Metrics | None = None,
                 flush_conntrack: bool = True, long_lived: bool = False) -> Engine:
    """The engine as the commands use it: backend, allow-list + snapshot, lock, generation.

    ``long_lived`` (watch): the engine keeps its kernel index between batches and parses
    conntrack dumps in a child process, away from the event thread.
    """
    grammar = IdentityGrammar(cfg.policy.identity_pattern, cfg.policy.account_pattern)
    return Engine(
        cfg, make_backend(cfg, netns), open_allow_list(cfg, grammar, allow_file),
        lock=Lock(lock_file or cfg.policy.lock_file), generation=Generation(cfg.policy.state_dir),
        flusher=ConntrackFlusher(netns, flush_conntrack, out_of_process=long_lived), metrics=metrics,
        long_lived=long_lived)


def close_engine(engine: Engine) -> None:
    if engine.lock is not None:
        engine.lock.close()
    if engine.flusher is not None:
        engine.flusher.wait_idle(2.0)
        engine.flusher.close()
    engine.backend.close()


def _sas_and_leases(cmd: vici_adapter.CommandSession) -> tuple[list[Sa], dict[IPv4Address, str]]:
    """list-sas, then the pools' online leases: the full reconcile's two views of who holds a VIP."""
    sas = cmd.list_sas()
    return sas, cmd.leases()


class ChangeWaiter(Protocol):
    """Something that says whether the allow-list store changed (ikemgr.store.notify)."""

    def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


def reconcile_live(cfg: Config, *, netns: str | None = None, allow_file: Path | None = None,
                   lock_file: Path | None = None, dry_run: bool = False) -> tuple[list[Sa], Report]:
    """One full reconcile of charon's live SAs against the allow-list and the kernel.

    The path `ikemgr reconcile`, `ikemgr sync` (after a committed change) and start-up
    share; `watch` runs the same engine continuously.
    """
    cmd = vici_adapter.CommandSession(vici_adapter.connect(cfg.strongswan.vici_socket))
    try:
        sas, leases = _sas_and_leases(cmd)
    finally:
        cmd.close()
    engine = build_engine(cfg, netns=netns, allow_file=allow_file, lock_file=lock_file)
    try:
        report = engine.full(sas, dry_run=dry_run, leases=leases)
    finally:
        close_engine(engine)
    return sas, report


def terminate_sas(cfg: Config, uniqueids: Iterable[str]) -> list[str]:
    """Ask charon to close these IKE_SAs (revoked grants with sync.terminate_revoked)."""
    done = []
    cmd = vici_adapter.CommandSession(vici_adapter.connect(cfg.strongswan.vici_socket))
    try:
        for uid in uniqueids:
            cmd.terminate_ike(uid)
            done.append(uid)
    finally:
        cmd.close()
    return done


# --------------------------------------------------------------------------- watch


def watch_unit_context(cfg: Config, header: str, config_path: Path, ikemgr_bin: str = "/usr/bin/ikemgr",
                       log_format: str = "json", metrics_port: int | None = None) -> dict[str, Any]:
    """Values for templates/systemd/ikemgr-watch.service.j2 (computed here, not in the template)."""
    state_dir = cfg.policy.state_dir
    name = str(state_dir.relative_to("/var/lib")) if state_dir.is_relative_to("/var/lib") else "ikemgr"
    return {"header": header, "ikemgr": ikemgr_bin, "config": str(config_path), "log_format": log_format,
            "metrics_port": metrics_port, "state_dir": str(state_dir), "state_dir_name": name,
            "lock_dir": str(cfg.policy.lock_file.parent)}


class Watcher:
    """The long-running loop: VICI events in batches, idle ticks, reconnect with backoff."""

    def __init__(self, engine: Engine, uri: str, *, tick: float = 0.5, allow_poll: float = 5.0,
                 backoff_max: float = 30.0, changes: ChangeWaiter | None = None) -> None:
        self.engine = engine
        self.uri = uri
        self.tick = tick
        self.allow_poll = allow_poll
        # a store change (PostgreSQL NOTIFY / SQLite data_version) re-reads the allow-list at
        # the next tick; the poll still runs for grants that expire without any write
        self.changes = changes
        self.backoff_max = backoff_max
        self.stop = False
        self.hup = False
        self.reconnects = 0
        # the change listener while the database is away: retry with backoff, log the
        # transitions (not every tick), and re-read the allow-list once it is back
        self._listener_down = False
        self._listener_retry_at = 0.0
        self._listener_backoff = 1.0

    def install_signals(self) -> None:
        def term(signum: int, frame: FrameType | None) -> None:
            self.stop = True

        def hup(signum: int, frame: FrameType | None) -> None:
            self.hup = True

        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGINT, term)
        signal.signal(signal.SIGHUP, hup)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stop and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def run(self) -> None:
        backoff = 0.2
        while not self.stop:
            cmd = ev = None
            try:
                ev = vici_adapter.EventSession(vici_adapter.connect(self.uri))
                ev.register()  # before list-sas: nothing falls between the two
                cmd = vici_adapter.CommandSession(vici_adapter.connect(self.uri))
                self._full(cmd)
                _log("watching", event="connected", uri=self.uri, reconnects=self.reconnects)
                backoff = 0.2
                self._loop(ev, cmd)
            except BackendUnavailable as e:
                if self.stop:
                    break
                log.warning("%s; retrying in %.1f s", e.message, backoff,
                            extra={"fields": {"event": "backend-down", "backend": e.backend}})
                self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                self.reconnects += 1
            finally:
                for s in (ev, cmd):
                    if s is not None:
                        s.close()
        _log("stopped", event="stopped", rules_left=len(self.engine.owned))

    def _full(self, cmd: vici_adapter.CommandSession) -> Report:
        sas, leases = _sas_and_leases(cmd)
        return self.engine.full(sas, leases=leases)

    def _store_changed(self) -> bool:
        if self.changes is None:
            return False
        now = time.monotonic()
        if now < self._listener_retry_at:
            return False
        try:
            changed = self.changes.wait(0)
        except BackendUnavailable as e:
            if not self._listener_down:
                log.warning("allow-list change listener: %s; retrying with backoff (up to %.0f s), "
                            "the allow-list poll keeps serving the last good list", e.message,
                            self.backoff_max,
                            extra={"fields": {"event": "backend-down", "backend": e.backend}})
            self._listener_down = True
            self._listener_retry_at = now + self._listener_backoff
            self._listener_backoff = min(self._listener_backoff * 2, self.backoff_max)
            return False
        if self._listener_down:
            log.info("allow-list change listener is back",
                     extra={"fields": {"event": "backend-up", "backend": "db"}})
            self._listener_down = False
            self._listener_backoff = 1.0
            return True  # notifications sent while it was away are lost: re-read now
        return changed

    def _loop(self, ev: vici_adapter.EventSession, cmd: vici_adapter.CommandSession) -> None:
        interval = self.engine.cfg.policy.reconcile_interval
        last_full = last_allow = time.monotonic()
        while not self.stop:
            batch = ev.batch(self.tick)
            received = time.monotonic()
            if batch:
                updates: list[SaUpdate] = []
                for name, msg in batch:
                    updates.extend(vici_adapter.parse_event(name, msg))
                try:
                    self.engine.events(updates, received)
                except ApplyFailed as e:
                    # the SA index is updated; the next full reconcile repairs the kernel
                    log.error("apply failed: %s", e.message, extra={"fields": {"event": "apply-failed"}})
                    self.engine.invalidate()
                    last_full = 0.0
            now = time.monotonic()
            if self.hup:
                self.hup = False
                self.engine.refresh_allow()
                self._full(cmd)
                last_full = last_allow = now
                continue
            if self._store_changed() or now - last_allow >= self.allow_poll:
                last_allow = now
                if self.engine.refresh_allow():
                    _log("allow-list changed", event="allow-list")
                    self.engine.recompute()
            if now - last_full >= interval:
                last_full = now
                self._full(cmd)
