"""`ikemgr apply`: install the base kernel state (tables, routes, base rules, SNAT, MSS clamp).

Idempotent: it observes only what it owns, plans the difference in pure code and
changes just that; a converged gateway prints "no changes". What it owns and no longer
finds in the config (a removed lab VLAN) is removed; everything else is left alone.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ikemgr.adapters.firewall import backend_for
from ikemgr.adapters.kernel.netns import InNetns, check_netns
from ikemgr.adapters.kernel.routes import Netlink
from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.config.schema import Config
from ikemgr.core.base_diff import address_fields, interface_fields, owned_tables, parse_rt_tables, plan
from ikemgr.core.base_state import base_state
from ikemgr.core.firewall import firewall_spec
from ikemgr.errors import ApplyFailed
from ikemgr.fsio import read_text, replace_text
from ikemgr.render.firewall import nft_file_text, nft_table_text
from ikemgr.render.routing import rt_tables_output
from ikemgr.result import Result

NetnsOpt = typer.Option(None, "--netns", help="Apply inside this network namespace (ip netns name).")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the plan; change nothing.")


def apply_base(cfg: Config, netns: str | None = None, dry_run: bool = False) -> Result:
    """Observe → plan → apply for the base state; the Result lists every change made."""
    if netns is not None:
        check_netns(netns)
    state = base_state(cfg)
    names = {t.id: t.name for t in state.tables}
    rt_path = cfg.routing.rt_tables_file
    rt_out = rt_tables_output(cfg)
    previous = read_text(rt_path)
    prev_tables = parse_rt_tables(previous or "")
    names_all = {**prev_tables, **names}
    tables = owned_tables(state, prev_tables)

    where = f" in netns {netns}" if netns else ""
    with InNetns(netns) as ns, Netlink(netns) as nl:
        ifindex = nl.require_interfaces(interface_fields(cfg))
        src_fields = address_fields(cfg)
        nl.require_addresses({str(r.prefsrc): (r.dev, src_fields.get(str(r.prefsrc), "?"))
                              for r in state.routes if r.prefsrc is not None})
        observed = nl.observe(state.protocol, cfg.routing.base_priority, tables)
        kplan = plan(state, observed)
        conflicts = nl.foreign_conflicts(kplan, state.protocol)
        if conflicts:
            route, proto = conflicts[0]
            raise ApplyFailed(f"route {route.ip_args(names_all.get(route.table))}: the table already "
                              f"holds a route to {route.dst} that ikemgr does not own (protocol "
                              f"{proto}); remove it or use another table")
        spec = firewall_spec(cfg, state)
        fw = backend_for(cfg, ns, nft_file_text(spec), nft_table_text(spec))
        fw_change = fw.diff()
        rt_change = previous != rt_out.text
        changes = list(fw_change.changes) + kplan.lines(names_all)
        if rt_change:
            changes.append(f"{'~' if previous is not None else '+'} file {rt_path}")
        if not dry_run:
            # SNAT first, so traffic steered by new rules never leaves unNATed
            fw.apply()
            nl.apply(kplan, state.protocol, ifindex, names_all, src_fields)
            left = plan(state, nl.observe(state.protocol, cfg.routing.base_priority, tables))
            if not left.empty:
                raise ApplyFailed(f"kernel state did not converge{where}: {left.lines(names_all)[0]}")
            # last: until the old routes are gone, this file is how we remember their tables
            replace_text(rt_path, rt_out.text)

    if not changes:
        messages: tuple[str, ...] = (f"no changes{where}",)
    elif dry_run:
        messages = (f"plan{where} ({len(changes)} changes, dry run):", *changes)
    else:
        messages = (f"applied{where} ({len(changes)} changes):", *changes)
    return Result(
        "apply",
        data={"netns": netns, "dry_run": dry_run, "changed": bool(changes) and not dry_run,
              "changes": changes, "firewall_backend": cfg.firewall.backend,
              "tables": sorted(names.items())},
        messages=messages,
    )


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply_cmd(
        config: Path = ConfigOpt,
        netns: str | None = NetnsOpt,
        dry_run: bool = DryRunOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Install routing tables, routes, base rules and the SNAT/MSS firewall; idempotent."""
        run("apply", as_json, lambda: apply_base(load_config(config), netns, dry_run))
