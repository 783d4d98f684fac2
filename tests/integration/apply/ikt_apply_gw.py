"""The apply tests' gateway namespace: veth links named like the test config, the real CLI.

The gateway namespace ``ikt-a-<random>`` holds the gateway ends (ens1, ens2, lab1, lab2);
their peers live in ``ikt-a-<random>p``. The rt_tables file the config names lives in the
test's tmp_path.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import IKEMGR, sh
from helpers.gateway import gateway_doc, vlan

VLAN1 = vlan(123456, "lab1", 0)
VLAN2 = vlan(123457, "lab2", 1)


@dataclass
class Gw:
    ns: str
    peer: str
    tmp: Path

    @property
    def rt_tables(self) -> Path:
        return self.tmp / "rt_tables.d" / "ikemgr.conf"

    def config(self, vlans: list[dict[str, Any]] | None = None, backend: str = "nftables",
               name: str = "ikemgr.yaml", **extra: Any) -> Path:
        own = {"routing": {"rt_tables_file": str(self.rt_tables)},
               "firewall": {"backend": backend},
               "policy": {"state_dir": str(self.tmp / "state"), "lock_file": str(self.tmp / "ikemgr.lock")}}
        doc = gateway_doc(vlans=[VLAN1, VLAN2] if vlans is None else vlans, **{**own, **extra})
        path = self.tmp / name
        path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
        return path

    def apply(self, config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
        """Run the real CLI from outside the namespace; returns (exit code, JSON result, stderr)."""
        p = subprocess.run([str(IKEMGR), "apply", "--config", str(config), "--netns", self.ns, "--json",
                            *args], capture_output=True, text=True, timeout=120)
        return p.returncode, json.loads(p.stdout) if p.stdout.strip() else {}, p.stderr

    def apply_text(self, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(IKEMGR), "apply", "--config", str(config), "--netns", self.ns, *args],
                              capture_output=True, text=True, timeout=120)

    def exec(self, *argv: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check).stdout

    def ip(self, *argv: str) -> str:
        return sh("ip", "-n", self.ns, *argv).stdout

    def rules(self) -> list[dict[str, Any]]:
        return json.loads(sh("ip", "-N", "-j", "-n", self.ns, "-4", "rule", "show").stdout)

    def routes(self) -> list[dict[str, Any]]:
        return json.loads(sh("ip", "-N", "-j", "-n", self.ns, "-4", "route", "show", "table", "all").stdout)

    def ruleset(self) -> list[dict[str, Any]]:
        return json.loads(self.exec("nft", "-j", "list", "ruleset"))["nftables"]

    def snapshot(self) -> dict[str, Any]:
        """Everything apply could conceivably touch, for before/after comparisons."""
        return {"rules": self.rules(), "routes": self.routes(),
                "nft": self.exec("nft", "list", "ruleset"),
                "rt_tables": self.rt_tables.read_text() if self.rt_tables.exists() else None}


def netns_del(name: str) -> None:
    if Path("/var/run/netns", name).exists():
        sh("ip", "netns", "del", name, check=False)
