"""Config → every file of the gateway, as Output values (no writing here): one line per feature."""

from __future__ import annotations

from pathlib import Path

from ikemgr.config.schema import Config
from ikemgr.core.secrets import Secrets
from ikemgr.render.firewall import firewall_outputs
from ikemgr.render.freeradius import radius_outputs
from ikemgr.render.routing import routing_outputs
from ikemgr.render.strongswan import strongswan_outputs
from ikemgr.render.systemd import DEFAULT_BIN, unit_outputs
from ikemgr.render.templates import HEADER, Output

#: FreeRADIUS files go below the render root like Debian's /etc/freeradius/3.0.
RADDB_PREFIX = "freeradius/3.0/"


def all_outputs(cfg: Config, secrets: Secrets, source: str, ikemgr_bin: Path = DEFAULT_BIN) -> list[Output]:
    header = HEADER
    return [
        *strongswan_outputs(cfg, secrets, header),
        *routing_outputs(cfg, header),
        *firewall_outputs(cfg),
        *radius_outputs(cfg, secrets, prefix=RADDB_PREFIX),  # none with remote RADIUS
        *unit_outputs(cfg, header, Path(source), ikemgr_bin),
    ]
