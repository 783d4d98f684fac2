"""`ikemgr sync`: bring the allow-list store in line with the configured sources, safely.

Exit codes: 0 synced (or nothing to do; rejected entries are reported, not fatal),
1 the store was updated but the live-session reconcile failed, 2 bad config,
3 a source or the database is unavailable (store unchanged), 4 refused by the removal
valve or by a concurrent sync holding the lock (store unchanged).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, log_level_of, run
from ikemgr.config.schema import Config
from ikemgr.core.grants import Grant, SyncPlan
from ikemgr.errors import EXIT_FAILED, EXIT_OK, IkemgrError, UsageError
from ikemgr.log import setup_logging
from ikemgr.result import Result, TableData

if TYPE_CHECKING:
    from ikemgr.allowlist.sync import CheckAccounts, OnChange, SyncOutcome

#: rows of each list shown to humans; --json carries everything
HUMAN_ROWS = 50


def live_reconcile_hook(cfg: Config, netns: str | None = None) -> OnChange:
    """After a committed change, apply it to live sessions through the one reconcile path.

    A new grant for a connected user adds their rule now; a removed, expired or suspended
    grant removes it now; with ``sync.terminate_revoked`` the revoked users' IKE_SAs are
    closed too (a running ``watch`` on every gateway of the database does the same when it
    sees the change). A failure (charon down, kernel refused) raises: the store stays updated,
    ``watch`` repairs at its next reconcile, and sync's exit code says what happened.
    """

    def on_change(outcome: SyncOutcome) -> None:
        from ikemgr.core.identity import IdentityGrammar
        from ikemgr.core.policy import holders_of
        from ikemgr.engine.oneshot import reconcile_live, terminate_sas

        sas, _report = reconcile_live(cfg, netns=netns, scoped=True)
        revoked = outcome.revoked_pairs()
        if not (cfg.sync.terminate_revoked and revoked):
            return
        grammar = IdentityGrammar.of(cfg)
        terminate_sas(cfg, holders_of(sas, revoked, cfg, grammar))

    return on_change


def _ident(g: Grant) -> str:
    return f"{g.account}@{g.vlan}"


def _grant_json(g: Grant) -> dict[str, Any]:
    return {"identity": _ident(g), "account": g.account, "vlan": g.vlan, "source": g.source,
            "valid_from": g.valid_from.isoformat() if g.valid_from else None,
            "valid_until": g.valid_until.isoformat() if g.valid_until else None}


def outcome_result(out: SyncOutcome) -> Result:
    """The plan (and what happened to it) as data for --json and tables for humans."""
    plan: SyncPlan = out.plan
    s = plan.summary()
    fetched = ", ".join(f"{k}: {v}" for k, v in out.fetched.items()) or "no sources configured"
    if out.dry_run:
        verb = "would change" if plan.changed else "nothing to change"
    elif out.applied:
        verb = "applied"
    else:
        verb = "nothing to change"
    head = (f"sync ({'dry run, ' if out.dry_run else ''}{fetched}): {verb}: +{s['added']} added, "
            f"-{s['removed']} removed, {s['expired']} expired, {s['updated']} updated, "
            f"{s['unchanged']} unchanged, {s['rejected']} rejected")
    messages = [head]
    errors: list[str] = []
    code = EXIT_OK
    if plan.rejected:
        messages.append(f"warning: {len(plan.rejected)} entries rejected and skipped (see table)")
    if plan.duplicates:
        messages.append(f"note: {plan.duplicates} duplicate entries merged")
    if out.accounts is not None:
        bad = {k: sum(1 for v in out.accounts.values() if v == k) for k in ("missing", "disabled")}
        messages.append(f"account check: {len(out.accounts)} accounts, {bad['missing']} missing, "
                        f"{bad['disabled']} disabled; "
                        + (f"{len(out.to_suspend)} would be suspended" if out.dry_run else
                           f"{len(out.suspended)} grants suspended, {len(out.resumed)} resumed"))
    if out.applied:
        if out.reconcile_error is not None:
            errors.append(f"store updated, but live sessions were not reconciled: {out.reconcile_error}")
            code = EXIT_FAILED
        elif out.reconciled:
            messages.append("live sessions reconciled")
        else:
            messages.append("live sessions: no reconcile hook wired; watch applies it at its next reconcile")
    per_vlan = plan.per_vlan()
    tables = []
    if per_vlan:
        tables.append(TableData("plan per VLAN", ("vlan", "added", "removed", "expired", "updated"),
                                tuple((v, c["added"], c["removed"], c["expired"], c["updated"])
                                      for v, c in per_vlan.items())))
    changes = ([("add", g) for g in plan.added] + [("remove", g) for g in plan.removed]
               + [("expire", g) for g in plan.expired] + [("update", a) for _, a in plan.updated])
    if changes:
        tables.append(TableData(f"changes (first {HUMAN_ROWS})" if len(changes) > HUMAN_ROWS else "changes",
                                ("change", "identity", "source", "valid_until"),
                                tuple((k, _ident(g), g.source, g.valid_until.isoformat() if g.valid_until
                                       else "") for k, g in changes[:HUMAN_ROWS])))
    if plan.rejected:
        tables.append(TableData("rejected entries", ("source", "where", "value", "reason"),
                                tuple((r.source, r.where, r.shown, r.reason)
                                      for r in plan.rejected[:HUMAN_ROWS])))
    data = {
        "dry_run": out.dry_run, "applied": out.applied, "reconciled": out.reconciled,
        "reconcile_error": out.reconcile_error, "sources": out.fetched, "summary": s,
        "removal_share": round(plan.removal_share, 4), "per_vlan": {str(k): v for k, v in per_vlan.items()},
        "added": [_grant_json(g) for g in plan.added], "removed": [_grant_json(g) for g in plan.removed],
        "expired": [_grant_json(g) for g in plan.expired],
        "updated": [{"before": _grant_json(b), "after": _grant_json(a)} for b, a in plan.updated],
        "rejected": [{"source": r.source, "where": r.where, "value": r.shown, "reason": r.reason}
                     for r in plan.rejected],
        "accounts": None if out.accounts is None else {
            "checked": len(out.accounts),
            "missing": sorted(a for a, v in out.accounts.items() if v == "missing"),
            "disabled": sorted(a for a, v in out.accounts.items() if v == "disabled"),
            "to_suspend": list(out.to_suspend),
            "suspended": [_grant_json(g) for g in out.suspended],
            "resumed": [_grant_json(g) for g in out.resumed]},
    }
    return Result("sync", data=data, messages=tuple(messages), tables=tuple(tables), errors=tuple(errors),
                  exit_code=code)


def sync_body(cfg: Config, *, dry_run: bool, force: bool, on_change: OnChange | None) -> Result:
    # imported here: every ikemgr command loads this module; only sync needs these
    from ikemgr.allowlist.sources import fetch_all
    from ikemgr.allowlist.store import current_actor, open_store
    from ikemgr.allowlist.sync import run_sync

    if not cfg.sync.sources:
        raise UsageError("no sync.sources configured; nothing to sync from")
    check: CheckAccounts | None = None
    if cfg.sync.account_check.enabled:
        from ikemgr.allowlist.directory_check import account_status

        check = partial(account_status, cfg, timeout=cfg.sync.timeout)
    store = open_store(cfg)
    try:
        out = run_sync(cfg, store, lambda: fetch_all(cfg.sync, cfg.ldap), datetime.now(UTC),
                       actor=current_actor("sync"), dry_run=dry_run, force=force, on_change=on_change,
                       check_accounts=check)
    finally:
        store.close()
    return outcome_result(out)


def _textfile(directory: Path, exit_code: int, started: float, summary: dict[str, int]) -> None:
    from ikemgr.metrics import write_run_textfile  # prometheus_client only when asked for

    write_run_textfile(directory, "sync", exit_code, started, {
        f"last_{k}": (f"grants {k} by the last sync", float(summary[k]))
        for k in ("added", "removed", "expired", "updated", "rejected") if k in summary})


def register(app: typer.Typer) -> None:
    @app.command("sync")
    def sync(
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
        force: bool = typer.Option(False, "--force", help="Apply even if more than sync.max_removal_share "
                                   "of the grants would be removed."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
        netns: str | None = typer.Option(None, "--netns", help="The gateway's policy lives in this netns."),
        no_live: bool = typer.Option(False, "--no-live", help="Only update the store; leave live sessions "
                                     "to `watch`."),
    ) -> None:
        """Fetch the allow-list sources, validate, diff, apply in one transaction, reconcile live sessions.

        Exit codes: 0 ok, 1 store updated but live reconcile failed, 2 bad config,
        3 a source or the database is unavailable (store unchanged), 4 refused by the
        removal valve or a concurrent sync (store unchanged).
        """

        def body() -> Result:
            cfg = load_config(config)
            setup_logging("text", log_level_of(None, cfg))
            hook = None if no_live else live_reconcile_hook(cfg, netns)
            textfile = None if dry_run else cfg.observability.textfile_dir
            started = time.time()
            try:
                result = sync_body(cfg, dry_run=dry_run, force=force, on_change=hook)
            except IkemgrError as e:
                if textfile is not None:
                    _textfile(textfile, e.exit_code, started, {})
                raise
            if textfile is not None:
                _textfile(textfile, result.exit_code, started, result.data["summary"])
            return result

        run("sync", as_json, body)
