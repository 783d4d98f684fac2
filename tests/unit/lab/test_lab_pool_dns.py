"""The lab's gateway charon reads its settings from the rendered strongswan.d files, so the
pool's DNS servers (charon.dnsN, served by attr) reach it exactly as rendered."""

from __future__ import annotations

from pathlib import Path

from ikemgr.core.secrets import Secrets
from ikemgr.render.strongswan import strongswan_outputs
from ikemgr_lab import charons
from ikemgr_lab.model import load_lab as load
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG, Lab

CLIENT_LAB = Path(__file__).resolve().parents[2] / "integration" / "client" / "lab.yaml"


def _gateway(path: Path) -> tuple[str, str]:
    """(the instance's strongswan.conf, the rendered ikemgr.conf it includes)."""
    lab = Lab(load(path), path)
    inst = charons.gateway_instance(lab.cfg, Path("/tmp/x"), "ikn-gw", Path("/tmp/x/etc"))
    rendered = {o.path: o.text for o in strongswan_outputs(lab.cfg, Secrets("s"), "h")}
    return inst.strongswan_conf(), rendered["strongswan.d/ikemgr.conf"]


def test_the_gateway_includes_the_rendered_settings_after_the_stock_files() -> None:
    conf, rendered = _gateway(CLIENT_LAB)
    lines = conf.splitlines()
    # Debian's strongswan.conf: the plugin packages' own files, strongswan.d/*.conf, then
    # the rendered files, which win; attr (it serves charon.dnsN) loads from its stock file
    stock = lines.index("include /etc/strongswan.d/*.conf")
    assert "        include /etc/strongswan.d/charon/*.conf" in lines[:stock]
    assert lines[stock + 1:stock + 3] == ["include /tmp/x/etc/strongswan.d/ikemgr.conf",
                                          "include /tmp/x/etc/strongswan.d/ikemgr-eap-radius.conf"]
    assert "    load_modular = yes" in lines and not any(ln.strip().startswith("load = ") for ln in lines)
    assert "dns" not in conf and "install_routes" not in conf  # only the rendered file sets them
    assert "    dns1 = 10.5.0.10\n" in rendered


def test_no_pool_dns_no_dns_lines() -> None:
    assert "dns1" not in _gateway(DEFAULT_LAB_CONFIG)[1]
