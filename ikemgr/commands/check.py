"""`ikemgr check`: the interop linter — which client breaks where, before users find out.

Exit codes: 0 no error-severity finding (warnings and infos may exist), 1 at least one
error finding, 2 bad input (config, options), 3 a probe's backend is unusable (``ip``).
``--config-only`` runs just what follows from the config (what ``ikemgr render`` runs);
otherwise the server certificate, the running host (optionally inside ``--netns``) and
RADIUS are probed too.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ikemgr.checks import host
from ikemgr.checks.interop import (
    Finding,
    cert_findings,
    config_findings,
    has_errors,
    host_findings,
    ordered,
    radius_findings,
)
from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, read_secret, run
from ikemgr.errors import EXIT_FAILED, EXIT_OK, UsageError
from ikemgr.result import Result, TableData


def check(config: Path, netns: str | None, config_only: bool, radius: bool, path_mtu: int,
          iproute2_dir: Path) -> Result:
    if not 576 <= path_mtu <= 9000:
        raise UsageError("--path-mtu must be between 576 and 9000")
    cfg = load_config(config)
    findings: list[Finding] = list(config_findings(cfg, path_mtu))
    ran = ["config"]
    if not config_only:
        findings += cert_findings(cfg, host.cert_facts(cfg.gateway.cert, cfg.gateway.ca), host.now())
        findings += host_findings(cfg, host.host_state(cfg, netns, iproute2_dir))
        ran += ["certificate", "host"]
        if radius:
            secret = read_secret(cfg.radius.secret_file, "radius.secret_file")
            findings += radius_findings(host.radius_probe(cfg, secret))
            ran.append("radius")
    findings = ordered(findings)
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    rows = tuple((f.severity, f.id, ", ".join(f.clients), f.exchange or "", f.message, f.fix)
                 for f in findings)
    summary = (f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info "
               f"({', '.join(ran)} checked{f' in netns {netns}' if netns else ''})")
    failed = has_errors(findings)
    return Result(
        "check",
        data={"findings": [f.to_json() for f in findings], "counts": counts, "checked": ran,
              "netns": netns},
        messages=(summary,),
        tables=(TableData("findings", ("severity", "id", "who breaks", "exchange", "what", "fix"),
                          rows),) if rows else (),
        errors=(f"{counts['error']} error finding(s)",) if failed else (),
        exit_code=EXIT_FAILED if failed else EXIT_OK,
    )


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_cmd(
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
        netns: str | None = typer.Option(None, "--netns", help="Probe the host inside this network "
                                         "namespace (sysctls, rules, tables)."),
        config_only: bool = typer.Option(False, "--config-only",
                                         help="Only what follows from the config (no cert, host, RADIUS)."),
        radius: bool = typer.Option(True, "--radius/--no-radius", help="Probe RADIUS reachability."),
        path_mtu: int = typer.Option(1500, "--path-mtu", help="Path MTU towards clients for the MSS check."),
        iproute2_dir: Path = typer.Option(host.IPROUTE2_DIR, "--iproute2-dir",
                                          help="Where rt_tables and rt_tables.d live."),
    ) -> None:
        """Interop linter: proposals vs. Apple/Windows/Android defaults, certificate, MTU, host."""
        run("check", as_json, lambda: check(config, netns, config_only, radius, path_mtu, iproute2_dir))
