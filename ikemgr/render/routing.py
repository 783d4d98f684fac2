"""Routing: sysctls, the routing description, and the rt_tables.d names of ikemgr's tables."""

from __future__ import annotations

from ikemgr.config.schema import Config
from ikemgr.core.base_state import BaseState, base_state
from ikemgr.render.templates import Output, render_template


def sysctl_prefix(scope: str) -> str:
    # sysctl.d uses '/' for a '.' inside a path component (ens3.1 → ens3/1)
    return f"net.ipv4.conf.{scope.replace('.', '/')}"


def sysctl_settings(cfg: Config) -> list[tuple[str, str]]:
    interfaces = [cfg.gateway.outside.interface, cfg.gateway.campus.interface,
                  *(v.interface for v in cfg.vlans)]
    rp = str(cfg.routing.rp_filter)
    out: list[tuple[str, str]] = []
    for scope in ("all", "default", *interfaces):
        prefix = sysctl_prefix(scope)
        out += [(f"{prefix}.accept_redirects", "0"), (f"{prefix}.send_redirects", "0"),
                (f"{prefix}.rp_filter", rp)]
    return out


def routing_lines(base: BaseState) -> list[str]:
    """Numeric table ids, so the file loads with `ip -batch` even before rt_tables names exist."""
    lines = [f"# table {t.id} = {t.name} ({t.owner})" for t in base.tables]
    lines += [f"route replace {r.ip_args()} proto {base.protocol}" for r in base.routes]
    lines += [f"rule add {rule.ip_args()} protocol {base.protocol}" for rule in base.rules]
    return lines


RT_TABLES_PATH = "iproute2/rt_tables.d/ikemgr.conf"


def rt_tables_context(state: BaseState) -> dict[str, object]:
    return {"tables": [{"id": t.id, "name": t.name, "owner": t.owner}
                       for t in sorted(state.tables, key=lambda t: t.id)]}


def rt_tables_output(cfg: Config) -> Output:
    return Output(RT_TABLES_PATH, render_template("iproute2/rt_tables.d/ikemgr.conf.j2",
                                                  **rt_tables_context(base_state(cfg))))


def routing_outputs(cfg: Config, header: str) -> list[Output]:
    base = base_state(cfg)
    return [
        Output("sysctl.d/90-ikemgr.conf",
               render_template("sysctl.d/90-ikemgr.conf.j2", header=header, settings=sysctl_settings(cfg))),
        Output("ikemgr/routing.ip",
               render_template("ikemgr/routing.ip.j2", header=header, protocol=base.protocol,
                               lines=routing_lines(base))),
        rt_tables_output(cfg),
    ]
