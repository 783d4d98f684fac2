"""Two real charons in two network namespaces of our own, for EAP through eap-radius.

The gateway charon (responder) relays EAP to the FreeRADIUS in its namespace; the client
charon (initiator) is the EAP peer. charon's pid file /var/run/charon.pid is compiled in,
so each charon gets a private mount namespace with its own directory over /run
(the lab recipe's approach). ESP is userspace (kernel-libipsec): this kernel has no ESP.

``charon_pair`` builds the whole chain (namespaces, slapd and the rendered FreeRADIUS in
the gateway namespace, both charons) and tears all of it down again; each test module
brings only its client side: plugins, connections, secrets and files.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import vici
from radius_support import ORG, PEOPLE, SECRET, SUFFIX, Certs, free_port, make_config, pki

from ikemgr.checks.charon import BASE_PLUGINS, LIBIPSEC_PLUGINS, CharonInstance
from ikemgr.checks.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.render.freeradius import RadiusSecrets, radius_outputs
from ikemgr_lab.slapd import LdapUser, SlapdInstance

GW_IP, CLIENT_IP = "192.0.2.1", "192.0.2.100"
GW_ID, RADIUS_ID = "vpn.example.ac.jp", "radius.example.ac.jp"
POOL = "172.29.0.0/24"


def netns_name(role: str, prefix: str = "ikt-r-") -> str:
    return f"{prefix}{secrets.token_hex(3)}{role}"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


class Charon(CharonInstance):
    """The shared charon runner with a fixed swanctl.conf and a few test conveniences."""

    def __init__(self, workdir: Path, netns: str, extra_plugins: str, plugin_conf: str,
                 swanctl_conf: str) -> None:
        super().__init__(
            workdir, netns,
            plugins=[*BASE_PLUGINS, *LIBIPSEC_PLUGINS, "attr", "eap-identity", *extra_plugins.split()],
            charon_settings=f"    plugins {{\n{plugin_conf}\n    }}" if plugin_conf else "")
        self.prepare()
        (self.swanctl_dir / "swanctl.conf").write_text(swanctl_conf)

    def swanctl_cmd(self, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.swanctl(command, *args, check=False, timeout=timeout)

    def sas(self) -> list[dict[str, dict]]:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(self.vici_path))
        try:
            return list(vici.Session(s).list_sas())
        finally:
            s.close()


@dataclass
class Pair:
    gw: Charon
    client: Charon
    radiusd: RadiusdInstance

    def gw_sa_for(self, identity: str) -> dict | None:
        """The gateway's ESTABLISHED IKE SA whose EAP identity is ``identity``, if any."""
        for entry in self.gw.sas():
            for sa in entry.values():
                eap_id = (sa.get("remote-eap-id") or sa.get("remote-id") or b"").decode()
                if eap_id == identity and sa.get("state") == b"ESTABLISHED":
                    return sa
        return None

    def initiate(self, child: str) -> subprocess.CompletedProcess[str]:
        return self.client.swanctl_cmd("--initiate", "--child", child, "--timeout", "20", timeout=40)

    def terminate(self, ike: str) -> None:
        self.client.swanctl_cmd("--terminate", "--ike", ike, "--timeout", "10", timeout=30)


def gateway_swanctl() -> str:
    return f"""connections {{
    gw {{
        version = 2
        local_addrs = {GW_IP}
        pools = pool
        encap = yes
        unique = never
        send_certreq = no
        proposals = aes256-sha256-x25519,default
        local {{
            auth = pubkey
            certs = gw.pem
            id = {GW_ID}
        }}
        remote {{
            auth = eap-radius
            eap_id = %any
        }}
        children {{
            gw {{
                local_ts = 10.0.0.0/8
                esp_proposals = aes256-sha256,default
            }}
        }}
    }}
}}
pools {{
    pool {{
        addrs = {POOL}
    }}
}}
"""


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
                client_files: Mapping[str, Path] | None = None) -> Iterator[Pair]:
    """client charon → gateway charon (eap-radius) → rendered FreeRADIUS → slapd, all real.

    ``users`` go into slapd under the people OU; ``client_files`` maps paths inside the
    client's swanctl dir (``x509/a.pem``) to files to copy there. The client always
    trusts the test CA, which issued the gateway's and FreeRADIUS's certificates.
    """
    ns_gw, ns_c = netns_name("g", prefix), netns_name("c", prefix)
    started: list[SlapdInstance | RadiusdInstance | Charon] = []
    try:
        for ns in (ns_gw, ns_c):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", "out0", "netns", ns_gw, "type", "veth",
           "peer", "name", "eth0", "netns", ns_c)
        sh("ip", "-n", ns_gw, "addr", "add", f"{GW_IP}/24", "dev", "out0")
        sh("ip", "-n", ns_c, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", ns_gw, "link", "set", "out0", "up")
        # a campus-side address: kernel-libipsec routes the VIP via ipsec0 from inside local_ts
        sh("ip", "-n", ns_gw, "addr", "add", "10.0.0.1/32", "dev", "lo")
        sh("ip", "-n", ns_c, "link", "set", "eth0", "up")

        slapd = SlapdInstance(work / "slapd", SUFFIX, free_port(), netns=ns_gw)
        slapd.start()
        started.append(slapd)
        slapd.add_ou("people")
        slapd.add_users(list(users), under=PEOPLE)
        rwork = work / "radius"
        rwork.mkdir()
        cfg = make_config(rwork, slapd, certs)
        raddb = prepare_raddb(rwork / "raddb", radius_outputs(cfg, RadiusSecrets(SECRET, slapd.root_password)))
        radiusd = RadiusdInstance(raddb, rwork, netns=ns_gw)
        radiusd.check_config()
        radiusd.start()
        started.append(radiusd)

        # the gateway's certificate for IKE
        gw_key, gw_crt = work / "gw.key", work / "gw.pem"
        pki("--gen", "--type", "ecdsa", "--size", "256", out=gw_key)
        pki("--issue", "--cacert", str(certs.ca), "--cakey", str(certs.ca_key), "--type", "priv",
            "--in", str(gw_key), "--dn", f"C=JP, O={ORG}, CN={GW_ID}", "--san", GW_ID,
            "--flag", "serverAuth", "--flag", "ikeIntermediate", out=gw_crt)

        eap_radius = f"""        eap-radius {{
            servers {{
                local {{
                    address = 127.0.0.1
                    secret = {SECRET}
                    auth_port = {cfg.radius.auth_port}
                }}
            }}
        }}"""
        gw = Charon(work / "gw", ns_gw, "eap-radius", eap_radius, gateway_swanctl())
        (gw.swanctl_dir / "x509" / "gw.pem").write_bytes(gw_crt.read_bytes())
        (gw.swanctl_dir / "private" / "gw.key").write_bytes(gw_key.read_bytes())
        (gw.swanctl_dir / "x509ca" / "ca.pem").write_bytes(certs.ca.read_bytes())
        client = Charon(work / "client", ns_c, client_plugins, "", client_swanctl)
        (client.swanctl_dir / "x509ca" / "ca.pem").write_bytes(certs.ca.read_bytes())
        for rel, src in (client_files or {}).items():
            (client.swanctl_dir / rel).write_bytes(src.read_bytes())
        for c in (gw, client):
            c.start()
            started.append(c)
            c.load_all()
        yield Pair(gw, client, radiusd)
    finally:
        for obj in reversed(started):
            obj.stop()
        for ns in (ns_c, ns_gw):
            sh("ip", "netns", "del", ns, check=False)
