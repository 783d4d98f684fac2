"""Helpers for the client-profile tests against real charons (fixtures: conftest.py).

A module of its own name, not ``conftest``: test modules import it, and several test
folders have a conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ikemgr.cli import app

GW_IP, CLIENT_IP = "192.0.2.1", "192.0.2.100"
FQDN = "vpn.example.ac.jp"



def config_dict(tmp: Path) -> dict[str, Any]:
    return {
        "gateway": {"fqdn": FQDN,
                    "cert": str(tmp / "etc/swanctl/x509/gateway.crt"),
                    "key": str(tmp / "etc/swanctl/private/gateway.key"),
                    "ca": str(tmp / "etc/swanctl/x509ca/ca.crt"),
                    "outside": {"interface": "out0", "address": f"{GW_IP}/24", "gateway": "192.0.2.254"},
                    "campus": {"interface": "campus0", "address": "10.8.0.1/24", "gateway": "10.8.0.254"}},
        "pool": {"first": "10.8.0.100", "last": "10.8.0.199"},
        "campus_prefixes": ["10.0.0.0/8"],
        "radius": {"secret_file": str(tmp / "radius.secret")},
        "strongswan": {"kernel_ipsec": "libipsec", "encap": True, "farp": False},
        "eap": {"methods": ["mschapv2", "tls"], "tls_allowed_subject": "C=JP, O=Example University"},
        "pki": {"dir": str(tmp / "pki"), "organisation": "Example University", "country": "JP"},
    }


def ikemgr(*args: str) -> dict[str, Any]:
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)  # type: ignore[no-any-return]
