"""strongSwan: the swanctl connection and pool, charon's settings, eap-radius, plugin loads.

The contexts are computed here (proposal strings, yes/no words, the certificate file
name) so the templates only print them."""

from __future__ import annotations

from ikemgr.config.schema import Config
from ikemgr.core.secrets import Secrets, check_secret
from ikemgr.errors import UsageError
from ikemgr.render.cert_auth import cert_auth_context
from ikemgr.render.templates import Output, render_template


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


#: eap-radius preference boost: charon scores a reachable server 110-210 and an unreachable
#: one 0-100 (plus the boost), so the primary wins while it answers and the secondary takes
#: over when it does not (strongSwan radius_config.c get_preference)
PRIMARY_PREFERENCE = 100


def eap_radius_context(cfg: Config, secrets: Secrets, header: str) -> dict[str, object]:
    r = cfg.radius
    targets = r.targets
    if r.local:
        server_secrets: tuple[str, ...] = (secrets.radius,)
    else:
        server_secrets = secrets.radius_servers
        if len(server_secrets) != len(targets):
            raise UsageError(f"{len(targets)} RADIUS server(s) but {len(server_secrets)} secret(s)")
    servers = [
        {"name": t.name, "address": str(t.address), "auth_port": t.auth_port, "acct_port": t.acct_port,
         "secret": check_secret(secret, f"RADIUS secret ({t.secret_field})"),
         "preference": PRIMARY_PREFERENCE if t.name == "primary" else 0}
        for t, secret in zip(targets, server_secrets, strict=True)
    ]
    return {
        "header": header,
        "accounting": yes_no(r.accounting),
        "nas_identifier": r.nas_identifier,
        "servers": servers,
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


def strongswan_outputs(cfg: Config, secrets: Secrets, header: str) -> list[Output]:
    outs = [
        Output("swanctl/conf.d/ikemgr.conf",
               render_template("swanctl/conf.d/ikemgr.conf.j2", **swanctl_context(cfg, header),
                               **cert_auth_context(cfg))),
        Output("strongswan.d/charon.conf",
               render_template("strongswan.d/charon.conf.j2", **charon_context(cfg, header))),
        Output("strongswan.d/charon/eap-radius.conf",
               render_template("strongswan.d/charon/eap-radius.conf.j2",
                               **eap_radius_context(cfg, secrets, header)),
               mode=0o600, secret=True),
    ]
    for plugin, load in plugin_loads(cfg).items():
        outs.append(Output(f"strongswan.d/charon/{plugin}.conf",
                           render_template("strongswan.d/charon/plugin-load.conf.j2", header=header,
                                           plugin=plugin, load=yes_no(load))))
    return outs
