"""libreswan's pluto (not strongSwan) as a certificate-auth initiator against the rendered
gateway: IKE_AUTH completes on ``ikemgr-cert`` and a VIP from the pool is assigned.

libreswan conflicts with strongSwan's Debian packages, so it is never apt-installed: the
.deb is fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (once, into
/tmp/ikemgr-ikc/lsroot), and pluto runs in the client namespace inside a private mount
namespace with its own /run and the unpacked /usr/libexec bind-mounted (pluto forks
/usr/libexec/ipsec/addconn). Its library deps (libnss3-tools, libldns3, libunbound8,
libevent-*) come from apt. On this kernel pluto's own CHILD_SA install fails (no ESP) and
it drops the IKE SA without a DELETE (../shared/notes/ike-peers.md); the gateway side is
what is asserted.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from ikc_support import FQDN, GW_IP, ORG, WORK, Topology, sas, until

from ikemgr.config.load import load

pytestmark = pytest.mark.root

LSROOT = Path(os.environ.get("IKC_LSROOT", str(WORK / "lsroot")))
PLUTO = LSROOT / "usr" / "libexec" / "ipsec" / "pluto"
WHACK = "/usr/libexec/ipsec/whack"  # inside pluto's mount namespace (the unpacked tree)
IDENTITY = "ls@123456"


def _unpack_libreswan() -> None:
    if PLUTO.exists():
        return
    debs = WORK / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob("libreswan_*.deb")):
        r = subprocess.run(["apt-get", "download", "libreswan"], cwd=debs, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"libreswan .deb not available: {r.stderr.strip()[:200]}")
    deb = sorted(debs.glob("libreswan_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(LSROOT)], check=True, timeout=120)


def _needs() -> None:
    for tool in ("certutil", "pk12util"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing (apt-get install libnss3-tools)")
    ldd = subprocess.run(["ldd", str(PLUTO)], capture_output=True, text=True, timeout=30)
    if "not found" in ldd.stdout:
        pytest.skip("pluto's libraries missing: " + ", ".join(
            ln.split()[0] for ln in ldd.stdout.splitlines() if "not found" in ln))


def test_pluto_completes_ike_auth_and_gets_a_vip(topo: Topology) -> None:
    _unpack_libreswan()
    _needs()
    cfg_path = topo.config("libreswan")
    cfg = load(cfg_path)
    gw = topo.gateway(cfg_path)
    L = topo.work / "ls"
    for d in ("run", "ipsec.d", "nss"):
        (L / d).mkdir(parents=True, exist_ok=True)
    # client certificate → PKCS#12 → NSS db (the CA gets trust flags separately)
    issued = topo.pki.client("ls", IDENTITY)
    key = serialization.load_pem_private_key(issued.key.read_bytes(), None)
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    p12 = L / "ls.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"ls-client", key, cert, None, serialization.BestAvailableEncryption(b"ikc")))  # type: ignore[arg-type]
    nss = f"sql:{L / 'nss'}"
    subprocess.run(["certutil", "-N", "-d", nss, "--empty-password"], check=True, timeout=60)
    subprocess.run(["pk12util", "-i", str(p12), "-d", nss, "-W", "ikc"], check=True, timeout=60,
                   capture_output=True)
    subprocess.run(["certutil", "-A", "-n", "ikcca", "-t", "CT,,", "-d", nss, "-i", str(topo.pki.ca)],
                   check=True, timeout=60)
    (L / "ipsec.conf").write_text(f"""config setup
    logfile={L}/pluto.log
    logappend=no
    plutodebug=none
    uniqueids=no

conn certvpn
    ikev2=yes
    left=%defaultroute
    leftcert=ls-client
    leftid=%fromcert
    leftauth=ecdsa
    rightauth=ecdsa
    leftmodecfgclient=yes
    leftsubnet=0.0.0.0/0
    right={GW_IP}
    rightid=@{FQDN}
    rightsubnet=10.0.0.0/8
    narrowing=yes
    encapsulation=yes
    auto=add
""")
    (L / "ipsec.secrets").write_text("")
    script = ('mount --bind "$1" /run && mount --bind "$2" /usr/libexec && '
              'mount --bind "$3" /etc/ipsec.conf && mount --bind "$4" /etc/ipsec.secrets && '
              'mount --bind "$5" /etc/ipsec.d && mkdir -p /run/pluto && '
              'exec /usr/libexec/ipsec/pluto --nofork --stderrlog --config /etc/ipsec.conf --nssdir "$6"')
    # the client namespace needs a default route for left=%defaultroute
    subprocess.run(["ip", "-n", topo.client_ns, "route", "replace", "default", "via", GW_IP],
                   check=True, timeout=30)
    out = open(L / "pluto.stdout", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topo.client_ns, "unshare", "--mount", "--propagation", "private",
         "/bin/sh", "-c", script, "sh", str(L / "run"), str(LSROOT / "usr" / "libexec"),
         str(L / "ipsec.conf"), str(L / "ipsec.secrets"), str(L / "ipsec.d"), str(L / "nss")],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    try:
        assert until(lambda: "listening for IKE messages" in (L / "pluto.stdout").read_text(errors="replace"),
                     15), (L / "pluto.stdout").read_text(errors="replace")[-2000:]

        def whack(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "-n", WHACK, "--ctlsocket",
                                   "/run/pluto/pluto.ctl", *args], capture_output=True, text=True,
                                  timeout=60)

        whack("--name", "certvpn", "--initiate", "--asynchronous")
        dn = f"C=JP, O={ORG}, CN={IDENTITY}"
        got = until(lambda: [s for s in sas(gw) if s["name"] == "ikemgr-cert"
                             and s.get("remote-id") == dn and s.get("remote-vips")], 20)
        assert got, (gw.log_tail(30), (L / "pluto.stdout").read_text(errors="replace")[-3000:])
        sa = got[0]
        vip = ipaddress.ip_address(sa["remote-vips"][0])
        assert int(cfg.pool.first) <= int(vip) <= int(cfg.pool.last)
        assert "remote-eap-id" not in sa
        plog = (L / "pluto.stdout").read_text(errors="replace")
        assert "established IKE SA" in plog and f"received INTERNAL_IP4_ADDRESS {vip}" in plog
        whack("--name", "certvpn", "--delete")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        topo.stop(gw)
