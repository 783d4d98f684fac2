"""Config → template contexts for the gateway files (pure).

Every value a template prints is computed here; templates only place them.
"""

from __future__ import annotations

from ikemgr.config.schema import Config
from ikemgr.core.gateway import BaseState
from ikemgr.core.secrets import Secrets, check_secret

HEADER = "rendered by ikemgr from {source}; changes here are overwritten by `ikemgr render`"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def swanctl_context(cfg: Config, header: str) -> dict[str, object]:
    ss = cfg.strongswan
    return {
        "header": header,
        "conn": ss.connection,
        "local_addrs": str(cfg.gateway.outside.address.ip),
        "pool_name": cfg.pool.name,
        "pool_range": cfg.pool.range_text,
        "proposals": ",".join(ss.proposals),
        "esp_proposals": ",".join(ss.esp_proposals),
        "unique": ss.unique,
        "dpd_delay": ss.dpd_delay,
        "rekey_time": ss.rekey_time,
        "fragmentation": yes_no(ss.fragmentation),
        "mobike": yes_no(ss.mobike),
        "encap": ss.encap,
        "cert_file": cfg.gateway.cert.name,
        "fqdn": cfg.gateway.fqdn,
        "local_ts": ",".join(str(n) for n in ss.local_ts),
        "updown": str(ss.updown) if ss.updown is not None else "",
    }


def charon_context(cfg: Config, header: str) -> dict[str, object]:
    r = cfg.routing
    return {
        "header": header,
        "install_routes": yes_no(r.install_routes or cfg.strongswan.kernel_ipsec == "libipsec"),
        "charon_table": r.charon_table,
        "charon_priority": r.charon_priority,
        "base_priority": r.base_priority,
        "threads": cfg.strongswan.threads,
        "dns_servers": [str(d) for d in cfg.pool.dns],
    }


def eap_radius_context(cfg: Config, secrets: Secrets, header: str) -> dict[str, object]:
    r = cfg.radius
    return {
        "header": header,
        "accounting": yes_no(r.accounting),
        "nas_identifier": r.nas_identifier,
        "address": str(r.address),
        "auth_port": r.auth_port,
        "acct_port": r.acct_port,
        "secret": check_secret(secrets.radius, "RADIUS secret"),
    }


def plugin_loads(cfg: Config) -> dict[str, bool]:
    """Optional charon plugins whose Debian default is not what this gateway needs."""
    loads = {
        "kernel-libipsec": cfg.strongswan.kernel_ipsec == "libipsec",
        "farp": cfg.strongswan.farp,
    }
    if cfg.strongswan.updown is not None:  # hook mode: charon runs `updown =` only with this plugin
        loads["updown"] = True
    return loads


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
