"""`ikemgr hook`: the same decision, run from strongSwan's updown (no daemon)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, log_level_of, run
from ikemgr.result import Result


def register(app: typer.Typer) -> None:
    @app.command("hook")
    def hook(
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
        netns: str | None = typer.Option(None, "--netns", help="Apply policy inside this netns."),
        allow_file: Path | None = typer.Option(None, "--allow-file", help="Allow-list text file "
                                               "instead of the database."),
        lock_file: Path | None = typer.Option(None, "--lock-file", help="Override policy.lock_file."),
        log_format: str = typer.Option("text", "--log-format", help="text or json."),
        log_level: str | None = typer.Option(None, "--log-level", help="debug, info, warning or error "
                                             "(default: observability.log_level)."),
        lock_timeout: float = typer.Option(30.0, "--lock-timeout", min=0.0, max=3600.0,
                                           help="Seconds to wait for the policy lock (held by watch, "
                                           "reconcile or another hook); then exit 4."),
    ) -> None:
        """Run the policy decision for one updown call (charon's updown = the shipped wrapper).

        Reads PLUTO_VERB, PLUTO_UNIQUEID, PLUTO_PEER_SOURCEIP and PLUTO_XAUTH_ID (else
        PLUTO_PEER_ID). Idempotent per traffic-selector pair; serialised with watch (waits
        for the policy lock up to --lock-timeout seconds, then exits 4).
        """
        from ikemgr.adapters.kernel.netns import check_netns
        from ikemgr.adapters.updown_env import parse_env
        from ikemgr.engine.hook import run_hook
        from ikemgr.errors import IkemgrError, UsageError
        from ikemgr.log import setup_logging
        from ikemgr.metrics import write_run_textfile

        def body() -> Result:
            if log_format not in ("text", "json"):
                raise UsageError("--log-format must be text or json")
            cfg = load_config(config)
            setup_logging(log_format, log_level_of(log_level, cfg))
            call = parse_env(os.environ)
            if call.update is None:
                return Result("hook", data={"verb": call.verb, "changed": False},
                              messages=(f"{call.verb}: nothing to do",))
            if netns is not None:
                check_netns(netns)
            started = time.time()
            textfile = cfg.observability.textfile_dir
            try:
                report = run_hook(cfg, call.update, netns=netns, allow_file=allow_file, lock_file=lock_file,
                                  lock_timeout=lock_timeout)
            except IkemgrError as e:
                if textfile is not None:
                    write_run_textfile(textfile, "hook", e.exit_code, started, {})
                raise
            if textfile is not None:
                n = len(report.plan.add) + len(report.plan.remove) if report else 0
                write_run_textfile(textfile, "hook", 0, started,
                                   {"last_changes": ("rules the last hook call changed", float(n))})
            lines = tuple(report.plan.lines()) if report else ()
            return Result("hook", data={"verb": call.verb, "uniqueid": call.update.sa.uniqueid,
                                        "changed": bool(lines), "plan": list(lines)},
                          messages=lines or (f"{call.verb}: nothing to change",))

        run("hook", as_json, body)
