"""`ikemgr reconcile [--dry-run]`: charon's SAs against the kernel, once."""

from __future__ import annotations

from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.result import Result


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    def reconcile(
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would change; change nothing."),
        netns: str | None = typer.Option(None, "--netns", help="Apply policy inside this netns."),
        allow_file: Path | None = typer.Option(None, "--allow-file", help="Allow-list text file "
                                               "instead of the database."),
        lock_file: Path | None = typer.Option(None, "--lock-file", help="Override policy.lock_file."),
    ) -> None:
        """Add missing and remove stale per-user policy, from list-sas + allow-list + kernel."""
        from ikemgr.adapters.kernel.netns import check_netns
        from ikemgr.engine.hook import HookSas
        from ikemgr.engine.oneshot import reconcile_live

        def body() -> Result:
            cfg = load_config(config)
            if netns is not None:
                check_netns(netns)
            sas, report = reconcile_live(cfg, netns=netns, allow_file=allow_file, lock_file=lock_file,
                                         dry_run=dry_run)
            if cfg.strongswan.updown is not None and not dry_run:
                HookSas(cfg.policy.state_dir).save({s.uniqueid: s for s in sas if s.live})
            lines = report.plan.lines()
            verb = "would change" if dry_run else "changed"
            summary = (f"{len(sas)} SAs, {len(report.owned_after)} user rules; {verb}: "
                       f"+{len(report.plan.add)} -{len(report.plan.remove)}"
                       + (f", {report.stray} stray kernel entries" if report.stray else ""))
            return Result("reconcile", data={
                "dry_run": dry_run, "sas": len(sas), "rules": len(report.owned_after),
                "add": [_rule(r) for r in report.plan.add], "remove": [_rule(r) for r in report.plan.remove],
                "stray": report.stray, "allow_list_stale": report.allow_stale,
            }, messages=(*lines, summary))

        run("reconcile", as_json, body)


def _rule(r: object) -> dict[str, object]:
    from ikemgr.core.model import UserRule

    assert isinstance(r, UserRule)
    return {"vip": str(r.vip), "vlan": r.vlan, "table": r.table_id, "priority": r.priority}
