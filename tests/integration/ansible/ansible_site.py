"""The site the role tests converge: ansible-playbook on ansible/site.yml against localhost.

A module of its own name, not ``conftest``: the test modules import ``Site`` from it and the
``site`` fixture (conftest.py) builds one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import sh

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
PLAYBOOK = VENV_BIN / "ansible-playbook"
SITE = REPO / "ansible" / "site.yml"


@dataclass
class Site:
    ns: str
    peer: str
    tmp: Path
    wheel: Path
    radius_secret: str
    bind_password: str

    @property
    def root(self) -> Path:
        return self.tmp / "root"

    @property
    def venv(self) -> Path:
        return self.tmp / "venv"

    @property
    def config_path(self) -> Path:
        return self.tmp / "etc-ikemgr" / "ikemgr.yaml"

    @property
    def rt_tables(self) -> Path:
        return self.tmp / "rt_tables.d" / "ikemgr.conf"

    def config(self, vlans: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "gateway": {
                "fqdn": "vpn.example.test",
                "outside": {"interface": "ens1", "address": "192.0.2.1/24", "gateway": "192.0.2.254"},
                "campus": {"interface": "ens2", "address": "10.1.0.251/24", "gateway": "10.1.0.254",
                           "table": {"id": 200, "name": "gwk3"}},
            },
            "pool": {"name": "test-pool", "first": "10.1.0.10", "last": "10.1.0.250"},
            "campus_prefixes": ["10.0.0.0/8", "198.51.100.0/24"],
            "vlans": vlans,
            "routing": {"rt_tables_file": str(self.rt_tables)},
            "firewall": {"backend": "nftables"},
            "radius": {"address": "127.0.0.1", "secret_file": str(self.tmp / "secrets" / "radius.secret")},
            "ldap": {"uri": "ldap://127.0.0.1", "base_dn": "ou=people,dc=example,dc=test",
                     "bind_dn": "cn=admin,dc=example,dc=test",
                     "bind_password_file": str(self.tmp / "secrets" / "ldap.secret")},
            "policy": {"state_dir": str(self.tmp / "state"), "lock_file": str(self.tmp / "ikemgr.lock")},
            "database": {"url": f"sqlite:///{self.tmp}/ikemgr.db"},
        }

    def play(self, vlans: list[dict[str, Any]], *extra: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
        """ansible-playbook on the real site.yml against localhost, this site's variables."""
        variables: dict[str, Any] = {
            "ikemgr_manage_packages": False,          # installed by scripts/setup.sh
            "ikemgr_package_src": str(self.wheel),
            "ikemgr_dist_dir": str(self.tmp / "dist"),
            "ikemgr_venv": str(self.venv),
            "ikemgr_link_dir": str(self.tmp / "bin"),
            "ikemgr_python": "/usr/bin/python3",
            "ikemgr_config": self.config(vlans),
            "ikemgr_config_path": str(self.config_path),
            "ikemgr_radius_secret": self.radius_secret,
            "ikemgr_ldap_bind_password": self.bind_password,
            "ikemgr_render_root": str(self.root),
            "ikemgr_netns": self.ns,
            "ikemgr_manage_services": False,          # no systemd as PID 1
            "ikemgr_reload_swanctl": False,           # no charon running on this host
            **overrides,
        }
        vars_file = self.tmp / "vars.json"
        vars_file.write_text(json.dumps(variables))
        inventory = self.tmp / "inventory.ini"
        inventory.write_text("[gateways]\nlocalhost ansible_connection=local "
                             f"ansible_python_interpreter={sys.executable} ansible_become=false\n")
        env = {**os.environ, "ANSIBLE_HOME": str(self.tmp / "ansible-home"),
               "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-tmp"),
               "ANSIBLE_REMOTE_TEMP": str(self.tmp / "ansible-tmp"),
               "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
               "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
        return subprocess.run([str(PLAYBOOK), "-i", str(inventory), "-e", f"@{vars_file}", *extra,
                                str(SITE)], capture_output=True, text=True, env=env, cwd=self.tmp,
                              timeout=240)

    # ------------------------------------------------------------------ the namespace, read back

    def rules(self) -> list[dict[str, Any]]:
        return json.loads(sh("ip", "-N", "-j", "-n", self.ns, "-4", "rule", "show").stdout)

    def routes(self) -> list[dict[str, Any]]:
        return json.loads(sh("ip", "-N", "-j", "-n", self.ns, "-4", "route", "show", "table", "all").stdout)

    def nft_tables(self) -> set[tuple[str, str]]:
        out = sh("ip", "netns", "exec", self.ns, "nft", "-j", "list", "tables").stdout
        return {(o["table"]["family"], o["table"]["name"]) for o in json.loads(out)["nftables"]
                if "table" in o}

    def sysctl(self, key: str) -> str:
        return sh("ip", "netns", "exec", self.ns, "sysctl", "-n", key).stdout.strip()
