"""What render writes on a real Debian host: files no package owns, that win over the stock ones.

The stock /etc/strongswan.conf includes the plugins' own strongswan.d/charon/*.conf inside
charon.plugins and then strongswan.d/*.conf; ikemgr's settings live in strongswan.d files
of its own, so they come later and win, and no conffile is edited (dpkg never asks at an
upgrade; unattended-upgrades never holds strongSwan back). Proved with a real charon
started on exactly that layout — the host's stock plugin files plus the rendered ones —
and with dpkg's own records of every file the installed packages own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ikemgr.checks.charon import CharonInstance
from ikemgr.cli import app
from ikemgr.render.outputs import all_outputs

pytestmark = pytest.mark.root
STOCK = Path("/etc/strongswan.d")
PACKAGES = ("strongswan-charon", "strongswan-swanctl", "libcharon-extra-plugins", "freeradius-config",
            "libstrongswan", "libstrongswan-standard-plugins", "libstrongswan-extra-plugins")


def test_rendered_settings_override_the_stock_plugin_files_in_a_real_charon(tmp_path: Path, config: Path) -> None:
    # the lab-like settings: kernel-libipsec on (stock: load = no), farp on
    config.write_text(config.read_text().replace("strongswan:\n", "strongswan:\n  kernel_ipsec: libipsec\n"
                                                 "  encap: true\n  farp: true\n"))
    out = tmp_path / "etc"
    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out), "--no-check"])
    assert r.exit_code == 0, r.output
    assert "load = no" in (STOCK / "charon" / "kernel-libipsec.conf").read_text()
    etc = tmp_path / "strongswan.d"
    shutil.copytree(STOCK, etc)
    for f in (out / "strongswan.d").iterdir():
        shutil.copy2(f, etc / f.name)
    ns = "ikt-deb-" + tmp_path.name[-6:].replace("_", "")[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    # Debian's strongswan.conf pointed at the copy: only socket, log and /run are the instance's
    inst = CharonInstance(tmp_path / "charon", netns=ns, stock_layout=etc)
    try:
        inst.start()
        stats = inst.swanctl("--stats").stdout
        loaded = stats.split("loaded plugins:", 1)[1].split()
        # kernel-libipsec is "load = no" in its stock file: ikemgr's later file turned it on
        assert "kernel-libipsec" in loaded and "farp" in loaded and "eap-radius" in loaded, stats
    finally:
        inst.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _owned() -> tuple[set[str], set[str]]:
    """Every path the installed packages own, and every conffile, from dpkg's records."""
    owned: set[str] = set()
    conffiles: set[str] = set()
    for pkg in PACKAGES:
        listed = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True, check=False)
        owned |= {ln.strip() for ln in listed.stdout.splitlines() if ln.strip()}
        info = Path(f"/var/lib/dpkg/info/{pkg}.conffiles")
        if not info.exists():
            info = next(Path("/var/lib/dpkg/info").glob(f"{pkg}:*.conffiles"), info)
        if info.exists():
            conffiles |= {ln.split()[0] for ln in info.read_text().splitlines() if ln.strip()}
    return owned, conffiles


def test_no_rendered_file_is_owned_by_a_debian_package(config: Path) -> None:
    from ikemgr.commands._common import load_config, load_secrets

    cfg = load_config(config)
    owned, conffiles = _owned()
    assert "/etc/strongswan.d/charon.conf" in conffiles  # the records are really read
    paths = {"/etc/" + o.path for o in all_outputs(cfg, load_secrets(cfg), str(config))}
    assert not paths & conffiles, sorted(paths & conffiles)
    # directories are shared; a file inside them must not be a package's file
    assert not {p for p in paths & owned if not Path(p).is_dir()}, sorted(paths & owned)
