"""Check before write: the rendered tree is staged and judged by the real daemons first.

``ikemgr render`` writes nothing into the live tree until charon has loaded the swanctl
config (with the rendered strongswan.d settings beside it), ``freeradius -XC`` has
accepted the FreeRADIUS tree laid over Debian's stock one, and ``nft -c`` has accepted
the ruleset in a throw-away namespace. A refusal names the file and the daemon's own
message; the live files stay byte-identical.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ikemgr.checks.freeradius import STOCK_RADDB, RadiusdInstance, prepare_raddb
from ikemgr.checks.swanctl import SwanctlCheck, check_swanctl
from ikemgr.config.schema import Config
from ikemgr.errors import BackendUnavailable, CheckFailed, IkemgrError
from ikemgr.render.files import sync_outputs
from ikemgr.render.firewall import NFT_PATH
from ikemgr.render.outputs import RADDB_PREFIX
from ikemgr.render.templates import Output

SWANCTL_FILE = "swanctl/conf.d/ikemgr.conf"


class RenderRefused(IkemgrError):
    """A daemon refused a rendered file: nothing was written (exit 2, bad input)."""

    exit_code = 2

    def __init__(self, path: str, daemon: str, message: str) -> None:
        tail = " | ".join(ln.strip() for ln in message.strip().splitlines()[-6:] if ln.strip())
        super().__init__(f"render refused, nothing written: {path}: {daemon}: {tail[:600]}")
        self.path, self.daemon = path, daemon


@dataclass(frozen=True)
class StagedCheck:
    swanctl: SwanctlCheck | None
    freeradius: bool
    nft: bool
    skipped: tuple[str, ...] = ()  # what could not be checked on this host, and why


def _nft_check(text: str, workdir: Path) -> None:
    """``nft -c -f``: parse and validate without committing, in a namespace of its own."""
    ns = f"ikm-nftc-{secrets.token_hex(3)}"
    f = workdir / "ikemgr.nft"
    f.write_text(text)
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=15)
    except (OSError, subprocess.CalledProcessError) as e:
        raise BackendUnavailable("netns", f"ip netns add {ns}: {e}") from None
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-c", "-f", str(f)], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise RenderRefused(NFT_PATH, "nft -c", r.stderr or r.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15)


def check_staged(cfg: Config, outputs: Iterable[Output], *, stock_raddb: Path = STOCK_RADDB) -> StagedCheck:
    """Stage ``outputs`` in a private directory and let charon, FreeRADIUS and nft judge them."""
    outs = list(outputs)
    by_path = {o.path: o for o in outs}
    with tempfile.TemporaryDirectory(prefix="ikemgr-stage-") as tmp:
        stage = Path(tmp) / "etc"
        sync_outputs(stage, outs)
        swanctl: SwanctlCheck | None = None
        if SWANCTL_FILE in by_path:
            try:
                swanctl = check_swanctl(stage, cfg.strongswan.connection, cfg.pool.name, cfg.gateway.cert,
                                        cfg.gateway.key, cfg.gateway.fqdn)
            except CheckFailed as e:
                raise RenderRefused(SWANCTL_FILE, "charon", e.message) from None
        radius = [dataclasses.replace(o, path=o.path.removeprefix(RADDB_PREFIX))
                  for o in outs if o.path.startswith(RADDB_PREFIX)]
        checked_radius = False
        skipped: list[str] = []
        eap = cfg.eap
        missing = [str(p) for p in (eap.server_cert, eap.server_key, eap.ca_file) if not p.exists()]
        if radius and not (shutil.which("freeradius") and stock_raddb.is_dir()):
            skipped.append("freeradius -XC: FreeRADIUS is not installed here")
        elif radius and missing:
            # -XC instantiates the EAP module, which reads its certificates
            skipped.append(f"freeradius -XC: {', '.join(missing)} not on this host yet")
        elif radius:
            raddb = prepare_raddb(Path(tmp) / "raddb", radius, stock=stock_raddb)
            try:
                RadiusdInstance(raddb, Path(tmp)).check_config()
            except CheckFailed as e:
                raise RenderRefused(RADDB_PREFIX.rstrip("/"), "freeradius -XC", e.message) from None
            checked_radius = True
        checked_nft = False
        if NFT_PATH in by_path and cfg.firewall.backend == "nftables":
            _nft_check(by_path[NFT_PATH].text, Path(tmp))
            checked_nft = True
    return StagedCheck(swanctl, checked_radius, checked_nft, tuple(skipped))
