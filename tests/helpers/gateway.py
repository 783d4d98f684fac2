"""The one test gateway: Kyoto's config shape with documentation addresses, and its links.

Tests vary the interface names (each fixture's namespace names its links), the campus
prefixes and the VLAN list; everything else is the same everywhere, so it lives here once.
"""

from __future__ import annotations

from typing import Any

from helpers import sh

#: gateway-side interface → its address (the VLAN ones carry the SNAT address, noprefixroute)
LINKS = {
    "ens1": "192.0.2.1/24",
    "ens2": "10.1.0.251/24",
    "lab1": "10.2.0.253/24",
    "lab2": "10.2.1.253/24",
}


def vlan(number: int, interface: str, third_octet: int) -> dict[str, Any]:
    """Lab VLAN ``number`` on 10.2.<third_octet>.0/24, gateway .254 (SNAT defaults to .253)."""
    return {"number": number, "interface": interface, "subnet": f"10.2.{third_octet}.0/24",
            "gateway": f"10.2.{third_octet}.254"}


def gateway_doc(*, outside: str = "ens1", campus: str = "ens2",
                campus_prefixes: tuple[str, ...] = ("10.0.0.0/8", "198.51.100.0/24"),
                vlans: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A config document (a dict, as YAML would load it); ``extra`` replaces top-level keys."""
    doc: dict[str, Any] = {
        "gateway": {
            "fqdn": "vpn.example.test",
            "outside": {"interface": outside, "address": "192.0.2.1/24", "gateway": "192.0.2.254"},
            "campus": {"interface": campus, "address": "10.1.0.251/24", "gateway": "10.1.0.254",
                       "table": {"id": 200, "name": "gwk3"}},
        },
        "pool": {"first": "10.1.0.10", "last": "10.1.0.250"},
        "campus_prefixes": list(campus_prefixes),
        "vlans": [vlan(123456, "lab1", 0), vlan(123457, "lab2", 1)] if vlans is None else vlans,
    }
    doc.update(extra)
    return doc



def veth_gateway(ns: str, peer: str, links: dict[str, str] = LINKS) -> None:
    """Namespaces ``ns`` (the gateway's ends of ``links``, addressed) and ``peer`` (the other ends).

    The caller deletes both namespaces when done, also when this fails half-way.
    """
    sh("ip", "netns", "add", ns)
    sh("ip", "netns", "add", peer)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    for ifname, addr in links.items():
        sh("ip", "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", f"p-{ifname}", "netns", peer)
        sh("ip", "-n", ns, "addr", "add", addr, "dev", ifname, "noprefixroute")
        sh("ip", "-n", ns, "link", "set", ifname, "up")
        sh("ip", "-n", peer, "link", "set", f"p-{ifname}", "up")
