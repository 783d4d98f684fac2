"""The environment's kernel objects: netns, veth uplink, addresses, routes, NAT, sysctls.

Links, addresses and routes go through pyroute2; nftables through libnftables with
structured JSON (``model.host_ruleset`` …), never a command string. The host side is the
namespace ikemgr runs in: on a laptop that is the machine's own network, in the lab it is
the client machine's namespace (``ip netns exec ikn-cm ikemgr client up …``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path
from typing import Any

from ikemgr.checks import procs
from ikemgr.client import model
from ikemgr.client.runtime import InNetns
from ikemgr.errors import ApplyFailed, BackendUnavailable

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def current_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _ipr(netns: str | None = None) -> Any:
    from pyroute2 import IPRoute

    return IPRoute(netns=netns, flags=0) if netns else IPRoute()


def used_networks() -> list[IPv4Network]:
    """Every IPv4 route destination (all tables) and address prefix of the host side."""
    out: list[IPv4Network] = []
    with _ipr() as ipr:
        for r in ipr.route("dump", family=socket.AF_INET):
            dst = r.get_attr("RTA_DST")
            if dst:
                out.append(ip_network(f"{dst}/{r['dst_len']}", strict=False))  # type: ignore[arg-type]
        for a in ipr.get_addr(family=socket.AF_INET):
            out.append(ip_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False))  # type: ignore[arg-type]
    return out


def link_exists(ifname: str) -> bool:
    with _ipr() as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


def delete_link(ifname: str) -> bool:
    """Delete a host-side link if it is there (a veth whose namespace is already gone)."""
    with _ipr() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return False
        ipr.link("del", index=idx[0])
        return True


# --------------------------------------------------------------------------- create


def create(name: str, uplink: IPv4Network, gateway: IPv4Address) -> None:
    """netns NAME, veth ikc-NAME ↔ uplink0, the /30, and a host route to the gateway only.

    The environment gets *no* default route through the uplink: until the tunnel is up it
    can reach nothing but the gateway, afterwards everything else goes into the tunnel.
    """
    _ip_netns_in_root_mounts("add", name)
    host_if = model.host_ifname(name)
    h, e = model.uplink_addresses(uplink)
    with _ipr() as ipr:
        ipr.link("add", ifname=host_if, kind="veth",
                 peer={"ifname": model.ENV_IF, "net_ns_fd": name})
        idx = ipr.link_lookup(ifname=host_if)[0]
        ipr.addr("add", index=idx, address=str(h), prefixlen=uplink.prefixlen)
        ipr.link("set", index=idx, state="up")
    with _ipr(name) as eipr:
        lo = eipr.link_lookup(ifname="lo")[0]
        eipr.link("set", index=lo, state="up")
        up = eipr.link_lookup(ifname=model.ENV_IF)[0]
        eipr.addr("add", index=up, address=str(e), prefixlen=uplink.prefixlen)
        eipr.link("set", index=up, state="up")
        eipr.route("add", dst=str(gateway), dst_len=32, gateway=str(h), oif=up)


def kernel_has_esp(name: str) -> bool:
    """Try one ESP state in the (new, empty) environment: this kernel may lack ESP entirely."""
    key = "0x" + "11" * 20
    r = subprocess.run(["ip", "-n", name, "xfrm", "state", "add", "src", "192.0.2.1", "dst",
                        "192.0.2.2", "proto", "esp", "spi", "0x100", "mode", "tunnel",
                        "aead", "rfc4106(gcm(aes))", key, "128"],
                       capture_output=True, text=True, timeout=10, check=False)
    subprocess.run(["ip", "-n", name, "xfrm", "state", "flush"], capture_output=True,
                   timeout=10, check=False)
    return r.returncode == 0


def sysctl_in(name: str, key: str, value: str) -> None:
    r = subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", f"{key}={value}"],
                       capture_output=True, text=True, timeout=10, check=False)
    if r.returncode != 0:
        raise ApplyFailed(f"sysctl {key} in {name}: {r.stderr.strip()}")


def forwarding() -> str:
    return FORWARD.read_text().strip()


def set_forwarding(value: str) -> None:
    FORWARD.write_text(value + "\n")


def default_route(name: str, vip: str, uplink: IPv4Network, libipsec: bool,
                  timeout: float = 10.0) -> None:
    """Everything but IKE into the tunnel: default dev ipsec0 (userspace ESP's TUN)."""
    deadline = time.monotonic() + timeout
    with _ipr(name) as eipr:
        while True:
            if libipsec:
                links = eipr.link_lookup(ifname=model.TUN_IF)
            else:
                links = eipr.link_lookup(ifname=model.ENV_IF)
            vips = [a for a in eipr.get_addr(family=socket.AF_INET)
                    if a.get_attr("IFA_ADDRESS") == vip]
            if links and vips:
                break
            if time.monotonic() > deadline:
                raise ApplyFailed(f"environment {name}: the tunnel device or VIP {vip} did not "
                                  f"appear within {timeout:.0f}s")
            time.sleep(0.1)
        if libipsec:
            eipr.route("replace", dst="0.0.0.0", dst_len=0, oif=links[0], prefsrc=vip)
        else:
            h, _ = model.uplink_addresses(uplink)
            eipr.route("replace", dst="0.0.0.0", dst_len=0, oif=links[0], gateway=str(h),
                       prefsrc=vip)


# --------------------------------------------------------------------------- nftables


def _nft_apply(data: dict[str, Any]) -> None:
    import nftables  # type: ignore[import-untyped]

    nft = nftables.Nftables()
    nft.set_json_output(True)
    rc, _out, err = nft.json_cmd(data)
    if rc != 0:
        raise ApplyFailed(f"nftables: {err.strip()}")


def _nft_tables() -> list[str]:
    import nftables

    nft = nftables.Nftables()
    nft.set_json_output(True)
    rc, out, err = nft.json_cmd({"nftables": [{"list": {"tables": {"family": "ip"}}}]})
    if rc != 0:
        raise BackendUnavailable("nftables", err.strip())
    return [o["table"]["name"] for o in out.get("nftables", []) if "table" in o]


def nft_apply(data: dict[str, Any], netns: str | None = None) -> None:
    with InNetns(netns) as ns:
        ns.call(_nft_apply, data)


def nft_delete_table(table: str) -> bool:
    """Delete an ip table of the host side if it is there; True if it was."""
    if table not in _nft_tables():
        return False
    _nft_apply(model.delete_table(table))
    return True


def nft_tables() -> list[str]:
    return _nft_tables()


# --------------------------------------------------------------------------- processes


def pids_in(name: str) -> list[int]:
    """Every process whose network namespace is NAME (what ``ip netns pids`` reports)."""
    return procs.netns_pids(name, NETNS_DIR)


def remove_netns(name: str) -> None:
    if netns_exists(name):
        _ip_netns_in_root_mounts("delete", name)


def outer_mount_ns() -> str | None:
    """The mount namespace of the nearest ancestor that is not in ours (None: all are).

    ``ip netns exec`` runs its command in a new *slave* mount namespace. A named netns is a
    bind mount under /run/netns: made in here it would stay invisible to the rest of the
    system and vanish with this process. Made in the namespace ``ip netns exec`` was
    started from, it propagates to every slave, ours included.
    """
    own = os.stat("/proc/self/ns/mnt").st_ino
    pid = os.getppid()
    while pid > 1:
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino != own:
                return f"/proc/{pid}/ns/mnt"
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def _ip_netns_in_root_mounts(verb: str, name: str) -> None:
    """``ip netns add|delete NAME`` where the bind mount is seen system-wide."""
    outer = outer_mount_ns()
    argv = ["ip", "netns", verb, name]
    if outer is not None:
        argv = ["nsenter", f"--mount={outer}", "--", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if r.returncode != 0:
        raise ApplyFailed(f"ip netns {verb} {name}: {(r.stderr or r.stdout).strip()}")
