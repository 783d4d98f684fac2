"""`ikemgr render`: every file of the gateway from the config, written atomically."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer

from ikemgr.checks.interop import config_findings
from ikemgr.checks.staged import check_staged
from ikemgr.commands._common import ConfigOpt, JsonOpt, load_checked, load_secrets, run
from ikemgr.config.schema import Config
from ikemgr.render import files
from ikemgr.render.outputs import DEFAULT_BIN, all_outputs
from ikemgr.render.templates import Output
from ikemgr.result import Result, TableData


def _ikemgr_bin() -> Path:
    """The executable the rendered units should call: this one, when it is installed as ikemgr."""
    exe = Path(sys.argv[0])
    if exe.name == "ikemgr" and exe.is_absolute():
        return exe
    found = shutil.which("ikemgr")
    return Path(found) if found else DEFAULT_BIN


def outputs_for(cfg: Config, source: Path) -> list[Output]:
    return all_outputs(cfg, load_secrets(cfg), str(source.resolve()), _ikemgr_bin())


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render(
        config: Path = ConfigOpt,
        out: Path = typer.Option(Path("/etc"), "--out", "-o", help="Root the files are written under."),
        diff: bool = typer.Option(False, "--diff", help="Show a unified diff of every change."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
        check: bool | None = typer.Option(
            None, "--check/--no-check",
            help="Judge a staged copy first: charon loads the swanctl config, freeradius -XC the "
            "FreeRADIUS tree, nft -c the ruleset; a refusal writes nothing (exit 2). Default: on "
            "when writing, off with --dry-run."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Render swanctl, charon, eap-radius, rt_tables, routing, firewall and sysctl files.

        Unchanged files are not touched; files holding a secret are mode 0600.
        """

        def body() -> Result:
            cfg, warnings = load_checked(config)
            outputs = outputs_for(cfg, config)
            data: dict[str, object] = {"root": str(out), "dry_run": dry_run}
            pre: list[str] = []
            if check if check is not None else not dry_run:
                # check before write: nothing reaches the live tree unless every daemon accepts it
                staged = check_staged(cfg, outputs)
                sw = staged.swanctl
                if sw is not None:
                    note = (f" (with a temporary self-signed certificate: {cfg.gateway.cert} is not on "
                            "this host)") if sw.temporary_cert else ""
                    pre.append(f"check: charon loaded connection {sw.connection} and pool {sw.pool}{note}")
                if staged.freeradius:
                    pre.append("check: freeradius -XC accepted the FreeRADIUS tree")
                if staged.nft:
                    pre.append("check: nft -c accepted the ruleset")
                pre += [f"check: skipped {s}" for s in staged.skipped]
                data["check"] = {"connection": sw.connection if sw else None, "pool": sw.pool if sw else None,
                                 "temporary_cert": sw.temporary_cert if sw else None,
                                 "list_conns": sw.conns_output if sw else None,
                                 "list_pools": sw.pools_output if sw else None,
                                 "freeradius": staged.freeradius, "nft": staged.nft,
                                 "skipped": list(staged.skipped)}
            changes = files.sync_outputs(out, outputs, dry_run=dry_run)
            changed = [c for c in changes if c.action != "unchanged"]
            verb = "would change" if dry_run else "changed"
            messages = [f"{c.action:9} {out / c.path}" for c in changed] or [f"{out}: no changes"]
            if changed:
                messages.append(f"{len(changed)} file(s) {verb}, {len(changes) - len(changed)} unchanged")
            if diff:
                messages += [c.diff for c in changed if c.diff]
            messages += pre
            data["files"] = [{"path": c.path, "action": c.action} for c in changes]
            # the interop linter's config-only findings (docs/check.md): who breaks, and how
            findings = config_findings(cfg)
            messages += [f"{f.severity}: {f.id}: {f.message}" for f in findings
                         if f.severity in ("error", "warning")]
            data["findings"] = [f.to_json() for f in findings]
            table = TableData("rendered files", ("file", "action"),
                              tuple((c.path, c.action) for c in changes))
            return Result("render", data=data, messages=tuple(messages),
                          tables=(table,) if as_json else (), warnings=warnings)

        run("render", as_json, body)
