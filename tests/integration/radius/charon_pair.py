"""Two real charons in two network namespaces of our own, for EAP through eap-radius.

The gateway side is what ``ikemgr render`` wrote for a test config (the campus example
pointed at this test's slapd, ports, certificates and namespace address): the swanctl
connection and pool (``swanctl/conf.d/ikemgr.conf``, copied unchanged), the eap-radius
settings (``strongswan.d/ikemgr.conf`` and ``ikemgr-eap-radius.conf``, included as the host's
/etc/strongswan.conf includes them) and the
FreeRADIUS tree — set up as the lab does it (``ikemgr_lab.charons``). Only what belongs to
the instance is written here: its VICI socket, log, /run and the certificate files the
rendered ``certs =`` line names. The client charon (initiator) is the EAP peer.

charon's pid file /var/run/charon.pid is compiled in, so each charon gets a private mount
namespace with its own directory over /run (the lab recipe's approach). ESP is userspace
(kernel-libipsec): this kernel has no ESP.

``charon_pair`` builds the whole chain (namespaces, slapd, the rendered FreeRADIUS and
gateway in the gateway namespace, both charons) and tears all of it down again; each test
module brings only its client side: plugins, connections, secrets and files.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radius_support import ORG, PEOPLE, SUFFIX, Certs, make_config, pki
from typer.testing import CliRunner

from helpers import free_port, sh
from ikemgr.checks.charon import BASE_PLUGINS, LIBIPSEC_PLUGINS, CharonInstance
from ikemgr.checks.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.cli import app
from ikemgr.config.schema import Config
from ikemgr.render.outputs import RADDB_PREFIX
from ikemgr.render.templates import Output
from ikemgr_lab.charons import gateway_instance, install_rendered_swanctl, list_sas
from ikemgr_lab.slapd import LdapUser, SlapdInstance

GW_IP, CLIENT_IP = "192.0.2.1", "192.0.2.100"
GW_ID, RADIUS_ID = "vpn.example.ac.jp", "radius.example.ac.jp"


def netns_name(role: str, prefix: str = "ikt-r-") -> str:
    return f"{prefix}{secrets.token_hex(3)}{role}"



class Charon(CharonInstance):
    """The client: the shared charon runner with a fixed swanctl.conf."""

    def __init__(self, workdir: Path, netns: str, extra_plugins: str, swanctl_conf: str) -> None:
        super().__init__(
            workdir, netns,
            plugins=[*BASE_PLUGINS, *LIBIPSEC_PLUGINS, "attr", "eap-identity", *extra_plugins.split()])
        self.prepare()
        (self.swanctl_dir / "swanctl.conf").write_text(swanctl_conf)

    def swanctl_cmd(self, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.swanctl(command, *args, check=False, timeout=timeout)


@dataclass
class Pair:
    gw: CharonInstance
    client: Charon
    radiusd: RadiusdInstance
    cfg: Config            # the test config the gateway side was rendered from
    config_file: Path      # … as the file `ikemgr -c` reads
    rendered: Path         # `ikemgr render --out` of that config

    def gw_sas(self) -> list[dict[str, Any]]:
        """The gateway's IKE SAs (decoded to text), read over its VICI socket."""
        return list_sas(self.gw.vici_path)

    def gw_sa_for(self, identity: str) -> dict[str, Any] | None:
        """The gateway's ESTABLISHED IKE SA whose EAP identity is ``identity``, if any."""
        for sa in self.gw_sas():
            if (sa.get("remote-eap-id") or sa.get("remote-id")) == identity and sa.get("state") == "ESTABLISHED":
                return sa
        return None

    def initiate(self, child: str) -> subprocess.CompletedProcess[str]:
        return self.client.swanctl_cmd("--initiate", "--child", child, "--timeout", "20", timeout=40)

    def terminate(self, ike: str) -> None:
        self.client.swanctl_cmd("--terminate", "--ike", ike, "--timeout", "10", timeout=30)


def gateway_config(work: Path, slapd: SlapdInstance, certs: Certs, gw_cert: Path, gw_key: Path,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """The campus example for this namespace pair: its outside address, our certificates,
    userspace ESP (UDP-encapsulated, as kernel-libipsec needs), plus ``extra`` top-level
    sections; written as the file ``ikemgr -c`` reads (JSON is YAML)."""
    data = make_config(work, slapd, certs).model_dump(mode="json")
    data.update(extra or {})
    data["gateway"].update(fqdn=GW_ID, cert=str(gw_cert), key=str(gw_key), ca=str(certs.ca))
    data["gateway"]["outside"].update(interface="out0", address=f"{GW_IP}/24")
    data["strongswan"].update(kernel_ipsec="libipsec", encap=True)
    path = work / "ikemgr.yaml"
    path.write_text(json.dumps(Config.model_validate(data).model_dump(mode="json"), indent=1))
    return path


def render(config_file: Path, out: Path) -> None:
    r = CliRunner().invoke(app, ["render", "-c", str(config_file), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output


def rendered_raddb(rendered: Path) -> list[Output]:
    """The FreeRADIUS files exactly as `ikemgr render` wrote them (as the lab reads them)."""
    root = rendered / RADDB_PREFIX
    return [Output(str(p.relative_to(root)), p.read_text(), mode=p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*")) if p.is_file()]


def client_conn(name: str, local: str) -> str:
    """One client connection to the gateway; ``local`` is the body of its local { } section."""
    return f"""    {name} {{
        version = 2
        remote_addrs = {GW_IP}
        vips = 0.0.0.0
        encap = yes
        proposals = aes256-sha256-x25519,default
        local {{
{local}
        }}
        remote {{
            auth = pubkey
            id = {GW_ID}
        }}
        children {{
            {name} {{
                remote_ts = 10.0.0.0/8
                esp_proposals = aes256-sha256,default
            }}
        }}
    }}
"""


@contextmanager
def charon_pair(work: Path, certs: Certs, *, prefix: str, users: Sequence[LdapUser],
                client_plugins: str, client_swanctl: str,
                client_files: Mapping[str, Path] | None = None,
                config: Mapping[str, Any] | None = None) -> Iterator[Pair]:
    """client charon → rendered gateway charon (eap-radius) → rendered FreeRADIUS → slapd, all real.

    ``users`` go into slapd under the people OU; ``client_files`` maps paths inside the
    client's swanctl dir (``x509/a.pem``) to files to copy there; ``config`` adds top-level
    sections to the gateway's test config (``pki`` for profiles). The client always trusts
    the test CA, which issued the gateway's and FreeRADIUS's certificates.
    """
    ns_gw, ns_c = netns_name("g", prefix), netns_name("c", prefix)
    started: list[SlapdInstance | RadiusdInstance | CharonInstance] = []
    try:
        for ns in (ns_gw, ns_c):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", "out0", "netns", ns_gw, "type", "veth",
           "peer", "name", "eth0", "netns", ns_c)
        sh("ip", "-n", ns_gw, "addr", "add", f"{GW_IP}/24", "dev", "out0")
        sh("ip", "-n", ns_c, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", ns_gw, "link", "set", "out0", "up")
        sh("ip", "-n", ns_c, "link", "set", "eth0", "up")

        slapd = SlapdInstance(work / "slapd", SUFFIX, free_port(), netns=ns_gw)
        slapd.start()
        started.append(slapd)
        slapd.add_ou("people")
        slapd.add_users(list(users), under=PEOPLE)

        # the gateway's certificate for IKE, issued by the test CA
        pki_dir = work / "pki"
        pki_dir.mkdir()
        gw_key, gw_crt = pki_dir / "gateway.key", pki_dir / "gateway.crt"
        pki("--gen", "--type", "ecdsa", "--size", "256", out=gw_key)
        pki("--issue", "--cacert", str(certs.ca), "--cakey", str(certs.ca_key), "--type", "priv",
            "--in", str(gw_key), "--dn", f"C=JP, O={ORG}, CN={GW_ID}", "--san", GW_ID,
            "--flag", "serverAuth", "--flag", "ikeIntermediate", out=gw_crt)

        rwork = work / "radius"
        rwork.mkdir()
        config_file = gateway_config(rwork, slapd, certs, gw_crt, gw_key, config)
        cfg = Config.model_validate(json.loads(config_file.read_text()))
        rendered = work / "rendered"
        render(config_file, rendered)
        # an address inside each campus prefix: kernel-libipsec routes a client's VIP via ipsec0
        # from one inside each traffic selector it installs (a split tunnel names them all)
        for prefix in cfg.campus_prefixes:
            sh("ip", "-n", ns_gw, "addr", "add", f"{next(prefix.hosts())}/32", "dev", "lo")

        radiusd = RadiusdInstance(prepare_raddb(rwork / "raddb", rendered_raddb(rendered)), rwork,
                                  netns=ns_gw)
        radiusd.check_config()
        radiusd.start()
        started.append(radiusd)

        gw = gateway_instance(cfg, work / "gw", ns_gw, rendered)
        gw.prepare()
        install_rendered_swanctl(gw, rendered)
        # the files the rendered connection names (certs = <gateway.cert's name>)
        shutil.copy(gw_crt, gw.swanctl_dir / "x509" / cfg.gateway.cert.name)
        shutil.copy(gw_key, gw.swanctl_dir / "private" / cfg.gateway.key.name)
        shutil.copy(certs.ca, gw.swanctl_dir / "x509ca" / cfg.gateway.ca.name)
        client = Charon(work / "client", ns_c, client_plugins, client_swanctl)
        (client.swanctl_dir / "x509ca" / "ca.pem").write_bytes(certs.ca.read_bytes())
        for rel, src in (client_files or {}).items():
            (client.swanctl_dir / rel).write_bytes(src.read_bytes())
        for c in (gw, client):
            c.start(timeout=15)
            started.append(c)
            c.load_all()
        yield Pair(gw, client, radiusd, cfg, config_file, rendered)
    finally:
        for obj in reversed(started):
            obj.stop()
        for ns in (ns_c, ns_gw):
            sh("ip", "netns", "del", ns, check=False)
