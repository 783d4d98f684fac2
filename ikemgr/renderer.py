"""Config → every file of the gateway, as Output values (no writing here)."""

from __future__ import annotations

from pathlib import Path

from ikemgr.adapters.firewall import firewall_outputs, rt_tables_output
from ikemgr.adapters.templates import Output, render_template
from ikemgr.config.schema import Config
from ikemgr.core import contexts
from ikemgr.core.gateway import base_state
from ikemgr.core.radius import radius_outputs
from ikemgr.core.secrets import Secrets
from ikemgr.reconcile import watch_unit_context
from ikemgr.store.units import apply_unit_output, sync_unit_outputs


def gateway_outputs(cfg: Config, secrets: Secrets, source: str) -> list[Output]:
    header = contexts.HEADER.format(source=source)
    base = base_state(cfg)
    outs = [
        Output("swanctl/conf.d/ikemgr.conf",
               render_template("swanctl/conf.d/ikemgr.conf.j2", **contexts.swanctl_context(cfg, header))),
        Output("strongswan.d/charon.conf",
               render_template("strongswan.d/charon.conf.j2", **contexts.charon_context(cfg, header))),
        Output("strongswan.d/charon/eap-radius.conf",
               render_template("strongswan.d/charon/eap-radius.conf.j2",
                               **contexts.eap_radius_context(cfg, secrets, header)),
               mode=0o600, secret=True),
        Output("sysctl.d/90-ikemgr.conf",
               render_template("sysctl.d/90-ikemgr.conf.j2", header=header,
                               settings=contexts.sysctl_settings(cfg))),
        Output("ikemgr/routing.ip",
               render_template("ikemgr/routing.ip.j2", header=header, protocol=base.protocol,
                               lines=contexts.routing_lines(base))),
    ]
    for plugin, load in contexts.plugin_loads(cfg).items():
        outs.append(Output(f"strongswan.d/charon/{plugin}.conf",
                           render_template("strongswan.d/charon/plugin-load.conf.j2", header=header,
                                           plugin=plugin, load=contexts.yes_no(load))))
    return outs


#: FreeRADIUS files go below the render root like Debian's /etc/freeradius/3.0.
RADDB_PREFIX = "freeradius/3.0/"


#: Where the units call ikemgr from; the render command passes the running executable.
DEFAULT_BIN = Path("/usr/local/bin/ikemgr")


def unit_outputs(cfg: Config, source: str, ikemgr_bin: Path) -> list[Output]:
    """systemd units for the long-running watch and the periodic sync."""
    header = contexts.HEADER.format(source=source)
    watch = Output("systemd/system/ikemgr-watch.service",
                   render_template("systemd/ikemgr-watch.service.j2",
                                   **watch_unit_context(cfg, header, Path(source), str(ikemgr_bin))))
    return [watch, *sync_unit_outputs(cfg, header, Path(source), ikemgr_bin),
            apply_unit_output(cfg, header, Path(source), ikemgr_bin)]


def all_outputs(cfg: Config, secrets: Secrets, source: str, ikemgr_bin: Path = DEFAULT_BIN) -> list[Output]:
    return [*gateway_outputs(cfg, secrets, source), *firewall_outputs(cfg), rt_tables_output(cfg),
            *radius_outputs(cfg, secrets, prefix=RADDB_PREFIX), *unit_outputs(cfg, source, ikemgr_bin)]
