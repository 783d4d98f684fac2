"""`ikemgr render`: every file of the gateway from the config, written atomically."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import typer

from ikemgr.checks.swanctl import check_swanctl
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
        check: bool = typer.Option(False, "--check",
                                   help="Load the rendered swanctl config into a real charon "
                                   "(throw-away netns) and list its connection and pool."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Render swanctl, charon, eap-radius, rt_tables, routing, firewall and sysctl files.

        Unchanged files are not touched; files holding a secret are mode 0600.
        """

        def body() -> Result:
            cfg, warnings = load_checked(config)
            outputs = outputs_for(cfg, config)
            changes = files.sync_outputs(out, outputs, dry_run=dry_run)
            changed = [c for c in changes if c.action != "unchanged"]
            verb = "would change" if dry_run else "changed"
            messages = [f"{c.action:9} {out / c.path}" for c in changed] or [f"{out}: no changes"]
            if changed:
                messages.append(f"{len(changed)} file(s) {verb}, {len(changes) - len(changed)} unchanged")
            if diff:
                messages += [c.diff for c in changed if c.diff]
            data: dict[str, object] = {
                "root": str(out), "dry_run": dry_run,
                "files": [{"path": c.path, "action": c.action} for c in changes],
            }
            if check:
                root = out
                tmp = None
                if dry_run:  # nothing was written: check a private copy
                    tmp = tempfile.TemporaryDirectory(prefix="ikemgr-render-")
                    root = Path(tmp.name)
                    files.sync_outputs(root, outputs)
                try:
                    res = check_swanctl(root, cfg.strongswan.connection, cfg.pool.name,
                                        cfg.gateway.cert, cfg.gateway.key, cfg.gateway.fqdn)
                finally:
                    if tmp is not None:
                        tmp.cleanup()
                note = " (with a temporary self-signed certificate: " \
                       f"{cfg.gateway.cert} is not on this host)" if res.temporary_cert else ""
                messages.append(f"check: charon loaded connection {res.connection} and pool "
                                f"{res.pool}{note}")
                data["check"] = {"connection": res.connection, "pool": res.pool,
                                 "temporary_cert": res.temporary_cert,
                                 "list_conns": res.conns_output, "list_pools": res.pools_output}
            table = TableData("rendered files", ("file", "action"),
                              tuple((c.path, c.action) for c in changes))
            return Result("render", data=data, messages=tuple(messages),
                          tables=(table,) if as_json else (), warnings=warnings)

        run("render", as_json, body)
