"""The ikemgr_gateway role, run for real: ansible-playbook (connection=local) on ansible/site.yml.

The role installs ikemgr from a wheel into a fresh venv, writes the config and secrets,
renders into a temporary root and applies inside a fresh network namespace
``ikt-ans-<random>`` whose veth interfaces carry the config's names. Converge, then
idempotence (``changed=0`` in the recap), then a config change (a lab VLAN dropped):
its routes go, the other VLAN's stay. Every kernel check reads the namespace back with
``ip -j`` / ``nft -j``; the packages (scripts/setup.sh) and systemd (not PID 1 here) are
left out through the role's own switches.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible_site import VENV_BIN, Site

from helpers.gateway import vlan

pytestmark = pytest.mark.root

PROTO = "99"

#: gateway-side interface → address; the VLAN ends hold the SNAT address (broadcast − 2)
VLAN1 = vlan(123456, "lab1", 0)
VLAN2 = vlan(123457, "lab2", 1)
#: the failure tests need no install of their own: they use the checkout's ikemgr
CHECKOUT_IKEMGR: dict[str, Any] = {"ikemgr_manage_install": False, "ikemgr_bin": str(VENV_BIN / "ikemgr")}
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(p: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    """(ok, changed) of localhost from the PLAY RECAP; the run must have succeeded."""
    assert p.returncode == 0, f"ansible-playbook exit {p.returncode}\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    m = RECAP.search(p.stdout)
    assert m, p.stdout[-3000:]
    assert (m.group(3), m.group(4)) == ("0", "0"), m.group(0)
    return int(m.group(1)), int(m.group(2))


def owned_routes(s: Site) -> set[tuple[str, str, str | None, str | None]]:
    return {(r.get("table", "254"), r["dst"], r.get("dev"), r.get("gateway"))
            for r in s.routes() if r.get("protocol") == PROTO}


def base_rules(s: Site) -> set[tuple[str, str, str]]:
    return {(f"{r['src']}/{r['srclen']}", f"{r['dst']}/{r['dstlen']}", r["table"])
            for r in s.rules() if r["priority"] == 30001 and r.get("protocol") == PROTO}


def mode_of(path: Path) -> tuple[int, str]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), _group(st.st_gid)


def _group(gid: int) -> str:
    import grp
    return grp.getgrgid(gid).gr_name


def test_syntax_check(site: Site) -> None:
    p = site.play([VLAN1], "--syntax-check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "playbook: " in p.stdout


def test_argument_specs_refuse_a_wrong_type(site: Site) -> None:
    """The typed meta/argument_specs.yml stops the play before any task touches the host."""
    p = site.play([VLAN1], "-e", '{"ikemgr_manage_services": "perhaps"}')
    assert p.returncode != 0
    assert "ikemgr_manage_services" in p.stdout
    assert "Validating arguments against arg spec" in p.stdout
    assert not site.config_path.exists() and not site.venv.exists()


def test_converge_idempotence_and_vlan_removal(site: Site) -> None:
    # ---------------------------------------------------------------- converge
    first = site.play([VLAN1, VLAN2])
    _, changed = recap(first)
    assert changed > 0
    # no_log: neither secret shows up in Ansible's output
    for secret in (site.radius_secret, site.bind_password):
        assert secret not in first.stdout and secret not in first.stderr

    # ikemgr came from the wheel, into the role's venv; the rendered units call that one
    assert (site.venv / "bin" / "ikemgr").exists()
    # linked where operators and charon (hook mode) find them; the updown entry point runs hook
    for name in ("ikemgr", "ikemgr-updown"):
        assert os.readlink(site.tmp / "bin" / name) == str(site.venv / "bin" / name)
    p = subprocess.run([str(site.tmp / "bin" / "ikemgr-updown"), "--help"], capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and "ikemgr-updown hook" in p.stdout, p.stdout + p.stderr
    unit = (site.root / "systemd/system/ikemgr-watch.service").read_text()
    assert f"ExecStart={site.venv}/bin/ikemgr watch --config {site.config_path}" in unit

    # the config and the secrets, where the config says, with their modes
    assert mode_of(site.config_path) == (0o640, "root")
    for path, value in ((site.tmp / "secrets/radius.secret", site.radius_secret),
                        (site.tmp / "secrets/ldap.secret", site.bind_password)):
        assert mode_of(path) == (0o600, "root")
        assert path.read_text() == value + "\n"

    # the rendered tree: secrets 0600 root / 0640 root:freerad, the rest 0644
    expected = {
        "swanctl/conf.d/ikemgr.conf": (0o644, "root"),
        "strongswan.d/ikemgr.conf": (0o644, "root"),
        "strongswan.d/ikemgr-eap-radius.conf": (0o600, "root"),
        "sysctl.d/90-ikemgr.conf": (0o644, "root"),
        "iproute2/rt_tables.d/ikemgr.conf": (0o644, "root"),
        "nftables/ikemgr.nft": (0o644, "root"),
        "freeradius/3.0/sites-enabled/ikemgr-clients": (0o640, "freerad"),
        "freeradius/3.0/mods-enabled/ldap": (0o640, "freerad"),
        "systemd/system/ikemgr-watch.service": (0o644, "root"),
        "systemd/system/ikemgr-sync.timer": (0o644, "root"),
    }
    assert {p: mode_of(site.root / p) for p in expected} == expected
    assert site.radius_secret in (site.root / "strongswan.d/ikemgr-eap-radius.conf").read_text()
    assert site.radius_secret in (site.root / "freeradius/3.0/sites-enabled/ikemgr-clients").read_text()
    assert site.bind_password in (site.root / "freeradius/3.0/mods-enabled/ldap").read_text()

    # the namespace: base rules at 30001, the campus and both VLAN tables, ikemgr's nft table
    assert base_rules(site) == {("10.1.0.0/24", "10.0.0.0/8", "200"),
                                ("10.1.0.0/24", "198.51.100.0/24", "200")}
    vlan1 = {("123456", "10.2.0.0/24", "lab1", None), ("123456", "default", "lab1", "10.2.0.254")}
    vlan2 = {("123457", "10.2.1.0/24", "lab2", None), ("123457", "default", "lab2", "10.2.1.254")}
    campus = {("200", "10.1.0.0/24", "ens2", None), ("200", "default", "ens2", "10.1.0.254")}
    assert owned_routes(site) == campus | vlan1 | vlan2
    assert ("ip", "ikemgr") in site.nft_tables()
    # the sysctl handler loaded the rendered file inside the namespace
    assert site.sysctl("net.ipv4.ip_forward") == "1"
    assert site.sysctl("net.ipv4.conf.lab2.rp_filter") == "2"

    # ---------------------------------------------------------------- idempotence
    second = site.play([VLAN1, VLAN2])
    assert recap(second)[1] == 0, second.stdout[-4000:]

    # ---------------------------------------------------------------- drop VLAN 123457
    # (the install is done: its tag is skipped, as an operator changing the config would)
    third = site.play([VLAN1], "--skip-tags", "ikemgr_install")
    assert recap(third)[1] > 0
    assert owned_routes(site) == campus | vlan1
    assert len(base_rules(site)) == 2
    assert "123457" not in site.rt_tables.read_text() and "123456" in site.rt_tables.read_text()
    assert "lab2" not in (site.root / "nftables/ikemgr.nft").read_text()


def test_a_missing_secret_stops_the_play_with_ikemgrs_error(site: Site) -> None:
    """No secret given and no file: render fails with ikemgr's one-line error, nothing applied."""
    before = (base_rules(site), owned_routes(site))
    cfg = site.config([VLAN1])
    missing = site.tmp / "secrets" / "absent.secret"
    cfg["radius"]["secret_file"] = str(missing)
    p = site.play([VLAN1], ikemgr_config=cfg, ikemgr_radius_secret="", **CHECKOUT_IKEMGR)
    assert p.returncode != 0
    assert "Render every file of the gateway" in p.stdout
    # ikemgr's own line (what it prints on a terminal), not a JSON blob
    assert f"ikemgr render (exit 2): radius.secret_file: {missing}: no such file" in p.stdout, \
        p.stdout[-3000:]
    assert "Install the kernel state" not in p.stdout
    assert (base_rules(site), owned_routes(site)) == before


def test_a_broken_config_never_replaces_the_working_one(site: Site) -> None:
    """`ikemgr config check` validates the new file before it replaces the old one."""
    before = site.config_path.read_bytes() if site.config_path.exists() else None
    cfg = site.config([VLAN1])
    cfg["vlans"][0]["subnet"] = "10.2.0.0/33"
    p = site.play([VLAN1], ikemgr_config=cfg, **CHECKOUT_IKEMGR)
    assert p.returncode != 0
    assert re.search(r"error: vlans\[0\]\.subnet \(line \d+\): 10\.2\.0\.0/33 is not a network", p.stdout), \
        p.stdout[-3000:]
    assert (site.config_path.read_bytes() if site.config_path.exists() else None) == before
    assert "Render every file of the gateway" not in p.stdout
