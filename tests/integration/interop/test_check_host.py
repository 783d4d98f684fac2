"""``ikemgr check --netns`` against a real namespace: a broken host state is flagged, the
fixed one is not. Sysctls, rules, routes and rt_tables are real kernel/file state; the
server certificate checks read real files issued here.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from ikc_support import HOST_IFACES, IKEMGR, make_pki

from helpers import sh
from helpers.gateway import gateway_doc

pytestmark = pytest.mark.root

def sysctl(ns: str, key: str, value: str) -> None:
    sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}")


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def config(work: Path, cert: Path, ca: Path) -> Path:
    (work / "radius.secret").write_text("s3cret\n")
    (work / "radius.secret").chmod(0o600)
    doc = gateway_doc(outside="out0", campus="campus0", campus_prefixes=("10.0.0.0/8",),
                      vlans=[{"number": 123456, "interface": "lab0", "subnet": "10.2.0.0/24",
                              "gateway": "10.2.0.254"}],
                      radius={"secret_file": str(work / "radius.secret"), "auth_port": free_udp_port(),
                              "timeout": 0.5, "retries": 1},
                      routing={"rt_tables_file": str(work / "iproute2" / "rt_tables.d" / "ikemgr.conf")})
    doc["gateway"].update(cert=str(cert), ca=str(ca))
    path = work / "ikemgr.yaml"
    path.write_text(json.dumps(doc))
    return path


def check(path: Path, ns: str, work: Path, *extra: str) -> tuple[int, list[dict]]:
    r = subprocess.run([str(IKEMGR), "check", "-c", str(path), "--netns", ns, "--json",
                        "--iproute2-dir", str(work / "iproute2"), *extra],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return r.returncode, json.loads(r.stdout)["data"]["findings"]


def keyed(findings: list[dict], prefixes: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(f["id"], f["subject"]) for f in findings if f["id"].startswith(prefixes)}


def test_broken_host_is_flagged_and_fixed_host_is_not(host_ns: tuple[str, Path]) -> None:
    ns, work = host_ns
    pki = make_pki(work / "pki")
    good = pki.server("good")
    (work / "iproute2" / "rt_tables.d").mkdir(parents=True)
    path = config(work, good.cert, pki.ca)

    # --- broken: forwarding off, strict rp_filter on the VLAN side, foreign rule at the
    # base priority, foreign routes in the VLAN table, a name clash in rt_tables
    sysctl(ns, "net.ipv4.ip_forward", "0")
    sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")
    for i in HOST_IFACES:
        sysctl(ns, f"net.ipv4.conf.{i}.rp_filter", "2")
    sysctl(ns, "net.ipv4.conf.lab0.rp_filter", "1")
    sysctl(ns, "net.ipv4.ip_no_pmtu_disc", "1")
    sh("ip", "-n", ns, "rule", "add", "priority", "30001", "lookup", "100")
    sh("ip", "-n", ns, "route", "add", "203.0.113.0/24", "dev", "lab0", "table", "123456")
    (work / "iproute2" / "rt_tables").write_text("255 local\n254 main\n200 isp\n")
    rc, found = check(path, ns, work, "--no-radius")
    assert rc == 1
    assert keyed(found, ("host.", "routing.")) == {
        ("host.ip-forward", "net.ipv4.ip_forward"),
        ("host.pmtu-disc-off", "net.ipv4.ip_no_pmtu_disc"),
        ("host.rp-filter-strict", "lab0"),
        ("host.forwarding-off", "out0"), ("host.forwarding-off", "campus0"), ("host.forwarding-off", "lab0"),
        ("routing.priority-collision", "30001"),
        ("routing.table-id-collision", "123456"),
        ("routing.table-name-collision", "200"),
    }
    assert not keyed(found, ("cert.",))  # the good server certificate

    # --- fixed: what ikemgr apply would leave (its own rule and route carry protocol 99)
    sysctl(ns, "net.ipv4.ip_forward", "1")
    sysctl(ns, "net.ipv4.ip_no_pmtu_disc", "0")
    sysctl(ns, "net.ipv4.conf.lab0.rp_filter", "2")
    sh("ip", "-n", ns, "rule", "del", "priority", "30001", "lookup", "100")
    sh("ip", "-n", ns, "route", "del", "203.0.113.0/24", "dev", "lab0", "table", "123456")
    sh("ip", "-n", ns, "rule", "add", "priority", "30001", "from", "10.1.0.0/24", "to", "10.0.0.0/8",
       "lookup", "200", "protocol", "99")
    sh("ip", "-n", ns, "route", "add", "10.2.0.0/24", "dev", "lab0", "table", "123456", "proto", "99")
    (work / "iproute2" / "rt_tables").write_text("255 local\n254 main\n")
    # a stale copy of ikemgr's own file is not a clash
    (work / "iproute2" / "rt_tables.d" / "ikemgr.conf").write_text("200 gwk3\n123456 gw123456\n")
    rc, found = check(path, ns, work, "--no-radius")
    assert keyed(found, ("host.", "routing.")) == set(), found
    assert rc == 0, found


def test_certificate_and_radius_findings_from_real_files(host_ns: tuple[str, Path]) -> None:
    ns, work = host_ns
    (work / "iproute2").mkdir()
    pki = make_pki(work / "pki")
    bad = pki.server("bad", dns=["other.example.test"], ekus=[ExtendedKeyUsageOID.CLIENT_AUTH])
    other_ca = make_pki(work / "other")
    path = config(work, bad.cert, other_ca.ca)
    # nothing listens on the RADIUS port: the probe gets no answer
    rc, found = check(path, ns, work)
    assert rc == 1
    assert {f["id"] for f in found if f["id"].startswith(("cert.", "radius."))} == {
        "cert.eku-server-auth", "cert.eku-ike-intermediate", "cert.san-dns", "cert.chain",
        "radius.unreachable"}
    san = next(f for f in found if f["id"] == "cert.san-dns")
    assert san["exchange"] == "IKE_AUTH" and "iOS" in san["clients"]
