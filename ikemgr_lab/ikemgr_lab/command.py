"""`ikemgr lab up|status|test|down`: the whole service, for real, in network namespaces."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ikemgr.commands._common import JsonOpt, run
from ikemgr.errors import EXIT_FAILED, ConfigError, UsageError
from ikemgr.result import Result, TableData
from ikemgr_lab.model import load_lab

LabConfigOpt = typer.Option(None, "--config", "-c",
                            help="Config with a lab: section "
                            "(default: $IKEMGR_LAB_CONFIG or examples/lab.yaml).")

PROOF_COLUMNS = ("client", "identity", "VIP", "path to lab host", "campus server saw", "lab host saw",
                 "internet saw")


def _config_path(config: Path | None) -> Path:
    from ikemgr_lab.runner import DEFAULT_LAB_CONFIG

    if config is not None:
        return config
    env = os.environ.get("IKEMGR_LAB_CONFIG")
    return Path(env) if env else DEFAULT_LAB_CONFIG


def _lab(config: Path | None):  # type: ignore[no-untyped-def]
    from ikemgr_lab.runner import Lab

    if os.geteuid() != 0:
        raise UsageError("the lab needs root (network namespaces, daemons)")
    path = _config_path(config)
    return Lab(load_lab(path), path)


def _proof_table(rows: list[dict]) -> TableData:
    return TableData("proof: what each destination saw", PROOF_COLUMNS, tuple(
        (r["client"], r["identity"], r["vip"] or "-", r["path"] or "-", r["campus_server_saw"] or "-",
         f"{r['lab_host_saw'] or '-'} (VLAN {r['lab_host']})", r["internet_saw"] or "-") for r in rows))


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="The namespace lab: gateway, RADIUS, LDAP, NAT, clients.")
    app.add_typer(sub, name="lab")

    @sub.command("up")
    def up(config: Path | None = LabConfigOpt, as_json: bool = JsonOpt) -> None:
        """Build the lab, start every daemon, connect the clients, print the proof table."""

        def body() -> Result:
            lab = _lab(config)
            data = lab.up(lambda line: typer.echo(line, err=True))
            problems = lab.expectations(data["proof"])
            phases = TableData("phases", ("phase", "seconds", "detail"),
                               tuple((p["phase"], f"{p['seconds']:.2f}", p["detail"])
                                     for p in data["phases"]))
            return Result("lab up", data={**data, "problems": problems},
                          messages=(f"lab up in {data['total_seconds']:.1f}s; state in {data['state_dir']}; "
                                    "`ikemgr lab down` removes everything",),
                          tables=(phases, _proof_table(data["proof"])),
                          errors=tuple(problems), exit_code=EXIT_FAILED if problems else 0)

        run("lab up", as_json, body)

    @sub.command("status")
    def status(config: Path | None = LabConfigOpt, as_json: bool = JsonOpt) -> None:
        """Namespaces, daemons and the gateway's IKE SAs of a running lab."""

        def body() -> Result:
            lab = _lab(config)
            st = lab.status()
            missing = sorted(set(st["expected_namespaces"]) - set(st["namespaces"]))
            dead = [d["name"] for d in st["daemons"] if not d["alive"]]
            msgs = [f"{len(st['namespaces'])}/{len(st['expected_namespaces'])} namespaces"
                    + (f" (missing: {', '.join(missing)})" if missing else ""),
                    f"{len(st['daemons']) - len(dead)}/{len(st['daemons'])} daemons alive"
                    + (f" (dead: {', '.join(dead)})" if dead else "")]
            sas = TableData("gateway IKE SAs", ("identity", "remote", "VIP", "state", "NAT"),
                            tuple((s["identity"], s["remote"], s["vip"], s["state"], s["nat_remote"])
                                  for s in st["sas"]))
            down = not st["namespaces"]
            return Result("lab status", data=st, messages=tuple(msgs if not down else ["lab is down"]),
                          tables=(sas,) if st["sas"] else (),
                          exit_code=EXIT_FAILED if (missing and not down) or dead else 0)

        run("lab status", as_json, body)

    @sub.command("test")
    def test(config: Path | None = LabConfigOpt, as_json: bool = JsonOpt) -> None:
        """Measure again what each destination sees and check it against the service's promises."""

        def body() -> Result:
            lab = _lab(config)
            rows = lab.proof()
            problems = lab.expectations(rows)
            return Result("lab test", data={"proof": rows, "problems": problems},
                          messages=("all checks passed",) if not problems else (),
                          tables=(_proof_table(rows),), errors=tuple(problems),
                          exit_code=EXIT_FAILED if problems else 0)

        run("lab test", as_json, body)

    @sub.command("down")
    def down(config: Path | None = LabConfigOpt, as_json: bool = JsonOpt) -> None:
        """Remove every namespace, process and file of the lab (idempotent, works after a crash)."""

        def body() -> Result:
            from ikemgr_lab.runner import teardown

            if os.geteuid() != 0:
                raise UsageError("the lab needs root (network namespaces, daemons)")
            from ikemgr_lab.model import LabConfig

            lab_cfg, rt = None, None
            try:
                cfg = load_lab(_config_path(config))  # the rt_tables file is the lab's only in a lab document
                lab_cfg, rt = cfg.lab, cfg.routing.rt_tables_file
            except ConfigError:
                pass  # an unreadable config (or no lab: section) must not keep a lab alive: clean the default
            lab_cfg = lab_cfg or LabConfig()
            d = teardown(lab_cfg.prefix, lab_cfg.state_dir, rt)
            return Result("lab down", data=d,
                          messages=(f"lab down: {d['namespaces']} namespaces, {d['processes']} processes, "
                                    f"{len(d['files'])} paths removed",))

        run("lab down", as_json, body)
