"""One-shot engine runs: `reconcile`, `status` (a dry run of the same reconcile) and terminations.

``status`` shows exactly what ``watch`` would do: it runs the engine's full reconcile
in dry-run mode (the same decision, lease check and newest-SA-wins), next to the rules
the engine read from the kernel, so the two can never disagree."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from ikemgr.adapters.vici.session import CommandSession, connect
from ikemgr.allowlist.live import LivePairs
from ikemgr.config.schema import Config
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import Sa, UserRule
from ikemgr.core.policy import live_pairs
from ikemgr.engine.engine import Report
from ikemgr.engine.wiring import build_engine, close_engine
from ikemgr.errors import BackendUnavailable

log = logging.getLogger("ikemgr.policy")


def sas_and_leases(cmd: CommandSession) -> tuple[list[Sa], dict[IPv4Address, str]]:
    """list-sas, then the pools' online leases: the full reconcile's two views of who holds a VIP.

    list-sas is read first without waiting for IKE_SAs that charon has checked out (an
    authentication waiting on RADIUS would hold the read for seconds), and charon leaves
    those out. An online lease whose VIP no listed SA holds means one of them held a VIP:
    the live user's rule would look stale, so list-sas is read again, waiting for every SA.
    """
    sas = cmd.list_sas()
    leases = cmd.leases()
    held = {vip for sa in sas for vip in sa.vips}
    missing = [vip for vip in leases if vip not in held]
    if missing:
        log.debug("%d online lease(s) without a listed IKE_SA (e.g. %s): list-sas again, "
                  "waiting for busy SAs", len(missing), missing[0])
        sas = cmd.list_sas(wait=True)
        leases = cmd.leases()
    return sas, leases


def charon_view(cfg: Config) -> tuple[list[Sa], dict[IPv4Address, str]]:
    """charon's SAs and pool leases, read on one short-lived command session."""
    cmd = CommandSession(connect(cfg.strongswan.vici_socket))
    try:
        return sas_and_leases(cmd)
    finally:
        cmd.close()


def reconcile_live(cfg: Config, *, netns: str | None = None, allow_file: Path | None = None,
                   lock_file: Path | None = None, dry_run: bool = False,
                   scoped: bool = False) -> tuple[list[Sa], Report]:
    """One full reconcile of charon's live SAs against the allow-list and the kernel.

    The path `ikemgr reconcile`, `ikemgr sync` (after a committed change) and start-up
    share; `watch` runs the same engine continuously. ``scoped`` (sync) reads only the
    live SAs' pairs from the store (``LivePairs``): the same decisions, without reading
    and snapshotting the whole list again (``watch`` does that when it hears the change).
    """
    sas, leases = charon_view(cfg)
    allow = None
    if scoped and allow_file is None:
        allow = LivePairs(cfg, live_pairs(sas, cfg, IdentityGrammar.of(cfg)))
    engine = build_engine(cfg, netns=netns, allow_file=allow_file, lock_file=lock_file, allow=allow)
    try:
        report = engine.full(sas, dry_run=dry_run, leases=leases)
    finally:
        close_engine(engine)
    return sas, report


def terminate_sas(cfg: Config, uniqueids: Iterable[str]) -> list[str]:
    """Ask charon to close these IKE_SAs (revoked grants with sync.terminate_revoked).

    One that is already gone (a ``watch`` closed it first) is logged and skipped.
    """
    done = []
    cmd = CommandSession(connect(cfg.strongswan.vici_socket))
    try:
        for uid in uniqueids:
            try:
                cmd.terminate_ike(uid)
            except BackendUnavailable as e:
                log.warning("terminate %s: %s", uid, e.message)
                continue
            done.append(uid)
    finally:
        cmd.close()
    return done


@dataclass(frozen=True)
class StatusView:
    """A dry-run full reconcile: charon's SAs, the engine's report, and the kernel it read."""

    sas: tuple[Sa, ...]
    report: Report
    kernel: dict[IPv4Address, UserRule]
    allow_stale: bool


def status_view(cfg: Config, *, netns: str | None = None, allow_file: Path | None = None) -> StatusView:
    sas, leases = charon_view(cfg)
    engine = build_engine(cfg, netns=netns, allow_file=allow_file, flush_conntrack=False)
    try:
        report = engine.full(sas, dry_run=True, leases=leases)
        kernel = dict(engine.owned)  # what the full reconcile read from the kernel
    finally:
        close_engine(engine)
    return StatusView(tuple(sas), report, kernel, report.allow_stale)
