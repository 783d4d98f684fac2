"""``client up|down|list|exec``: the environment's life cycle, with cleanup on every path.

Order matters for the guarantees in docs/client.md: the name, the profile and the
password are checked before anything exists; the state record is written before the
first kernel object; a failure anywhere in ``up`` runs the same teardown as ``down``,
and ``down`` works from the record plus what the kernel shows (so also after charon
was killed with SIGKILL).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import Any

from ikemgr.checks import procs
from ikemgr.client import ike, model, netenv
from ikemgr.client.state import Record, Store
from ikemgr.errors import ApplyFailed, IkemgrError, Refused, UsageError
from ikemgr.fsio import atomic_write

ROOT_HINT = "ikemgr client needs root for namespaces: run it with sudo"


@dataclass(frozen=True)
class Invoker:
    uid: int
    gid: int


def invoker() -> Invoker:
    """Who asked: the sudo caller (SUDO_UID/SUDO_GID, trusted only from real uid 0) or us."""
    if os.getuid() == 0:
        su, sg = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
        if su.isdigit():
            return Invoker(int(su), int(sg) if sg.isdigit() else int(su))
    return Invoker(os.getuid(), os.getgid())


def require_root() -> None:
    if os.geteuid() != 0:
        raise Refused(ROOT_HINT)


def _resolve_gateway(addrs: str) -> IPv4Address:
    try:
        a = ip_address(addrs)
    except ValueError:
        try:
            infos = socket.getaddrinfo(addrs, 500, socket.AF_INET, socket.SOCK_DGRAM)
        except socket.gaierror as e:
            raise UsageError(f"profile remote_addrs {model.shown(addrs)}: {e.strerror}") from None
        a = ip_address(infos[0][4][0])
    if not isinstance(a, IPv4Address):
        raise UsageError("profile remote_addrs: only an IPv4 gateway is supported")
    return a


def _forward_marker(store: Store, ino: int) -> Path:
    return store.dir / f"forwarding-{ino}.state"


# --------------------------------------------------------------------------- up


def up(name: str, profile_dir: Path, password_file: Path | None, store: Store, *,
       uplink_range: IPv4Network = model.DEFAULT_UPLINK_RANGE, ipsec: str = "auto",
       timeout: int = 30) -> dict[str, Any]:
    model.check_name(name)
    require_root()
    files = ike.read_profile_files(profile_dir)
    try:
        text = files["swanctl.conf"].decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("--profile: swanctl.conf is not UTF-8") from None
    prof = model.profile_of(text)
    ike.check_files(prof, files)
    password = None
    if password_file is not None:
        try:
            password = model.check_password(password_file.read_bytes())
        except OSError as e:
            raise UsageError(f"--password-file: {e.strerror}") from None
    if prof.auth == "eap-mschapv2" and password is None:
        raise UsageError("the profile uses an EAP password: give --password-file")
    # the password and identity must be quotable: checked before anything is created
    model.private_additions(prof, IPv4Address("192.0.2.1"), password)
    with store.locked():
        return _up_locked(name, prof, files, password, store, uplink_range, ipsec, timeout)


def _up_locked(name: str, prof: model.Profile, files: dict[str, bytes], password: str | None,
               store: Store, uplink_range: IPv4Network, ipsec: str, timeout: int) -> dict[str, Any]:
    host_if = model.host_ifname(name)
    if (store.read(name) is not None or netenv.netns_exists(name) or netenv.link_exists(host_if)
            or (netenv.ETC_NETNS / name).exists()):
        raise Refused(f"environment {name} exists (or its namespace, {host_if} or "
                      f"/etc/netns/{name} does): `ikemgr client down {name}` first")
    gateway = _resolve_gateway(prof.remote_addrs)
    used = netenv.used_networks()
    for other in store.names():
        r = store.read(other)
        if r is not None:
            used.append(IPv4Network(r.uplink))
    uplink = model.choose_uplink(used, uplink_range)
    who = invoker()
    rec = Record(name=name, owner_uid=who.uid, owner_gid=who.gid,
                 host_netns=netenv.current_netns_inode(), uplink=str(uplink), gateway=str(gateway),
                 connection=prof.connection, child=prof.child, auth=prof.auth,
                 identity=prof.identity, ipsec=ipsec)
    store.write(rec)
    try:
        netenv.create(name, uplink, gateway)
        libipsec = (not netenv.kernel_has_esp(name)) if ipsec == "auto" else ipsec == "libipsec"
        rec.ipsec = "libipsec" if libipsec else "kernel"
        store.write(rec)
        # the environment never routes for anyone: nothing can be sent *through* it
        netenv.sysctl_in(name, "net.ipv4.ip_forward", "0")
        netenv.nft_apply(model.env_ruleset(gateway if libipsec else None), netns=name)
        _enable_forwarding(store, rec.host_netns)
        netenv.nft_apply(model.host_ruleset(name, uplink))
        inst = ike.instance(store.workdir(name), name, libipsec)
        script = ike.dns_script(inst)
        ike.install_profile(inst, files, model.private_additions(prof, gateway, password,
                                                                 str(script)))
        ike.write_dns_script(inst)
        inst.start(timeout=15)
        assert inst.proc is not None
        rec.pids["charon"] = inst.proc.pid
        store.write(rec)
        ike.initiate(inst, prof, timeout)
        sa = ike.established(inst, prof)
        netenv.default_route(name, sa["vip"], uplink, libipsec)
        rec.dns = _dns(script.with_name(script.name + ".out"))
        _write_resolv(name, rec.dns)
        rec.vip = sa["vip"]
        # an initiator's list-sas carries no EAP identity; the profile's eap_id is the one sent
        rec.identity = prof.eap_id or sa["identity"] or prof.identity
        rec.phase = "up"
        rec.started = time.time()
        store.write(rec)
    except BaseException as e:
        teardown(name, store)
        if isinstance(e, Exception) and not isinstance(e, IkemgrError):
            # a kernel or OS refusal (netlink, nftables, a file): one line, not a traceback
            raise ApplyFailed(f"client up {name} failed and was rolled back: "
                              f"{type(e).__name__}: {e}") from e
        raise
    return _view(rec, sa)


def _enable_forwarding(store: Store, ino: int) -> None:
    """The host must forward for the uplink; if ikemgr switched it on, it guards and restores."""
    marker = _forward_marker(store, ino)
    if marker.exists() or netenv.forwarding() == "1":
        return
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"ip_forward_was": netenv.forwarding()}, f)
    netenv.nft_apply(model.forward_guard_ruleset())
    netenv.set_forwarding("1")


def _dns(resolv: Path, wait: float = 3.0) -> list[str]:
    """The gateway's DNS servers, as the updown script recorded them (it may lag a bit)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            servers = model.updown_dns(resolv.read_text())
        except FileNotFoundError:
            servers = []
        if servers or time.monotonic() > deadline:
            return servers
        time.sleep(0.1)


def _write_resolv(name: str, servers: list[str]) -> None:
    d = netenv.ETC_NETNS / name
    d.mkdir(parents=True, exist_ok=True, mode=0o755)
    atomic_write(d / "resolv.conf", model.resolv_conf(servers, name).encode(), 0o644)


# --------------------------------------------------------------------------- down


def teardown(name: str, store: Store) -> list[str]:
    """Remove everything of NAME that exists; returns what was removed. Idempotent."""
    removed: list[str] = []
    rec = store.read(name)
    if rec is not None and rec.host_netns != netenv.current_netns_inode():
        raise Refused(f"environment {name} was made in another network namespace: run "
                      "`client down` where `client up` ran")
    pids = netenv.pids_in(name)
    if rec is not None:
        pid = rec.pids.get("charon")
        if pid and procs.alive(pid) and _is_charon(pid) and pid not in pids:
            pids.append(pid)
    if pids:
        procs.terminate(pids)
        removed.append(f"{len(pids)} process(es)")
    if netenv.nft_delete_table(model.host_table(name)):
        removed.append(f"nftables table {model.host_table(name)}")
    if rec is not None and netenv.netns_exists(name):
        netenv.remove_netns(name)
        removed.append(f"namespace {name}")
    host_if = model.host_ifname(name)
    if netenv.delete_link(host_if):
        removed.append(f"link {host_if}")
    etc = netenv.ETC_NETNS / name
    if rec is not None and etc.exists():
        shutil.rmtree(etc)
        removed.append(str(etc))
    wd = store.workdir(name)
    if wd.exists():
        shutil.rmtree(wd)
    store.remove(name)
    if rec is not None:
        removed.append("state record")
        _restore_forwarding(store, rec.host_netns)
    return removed


def _restore_forwarding(store: Store, ino: int) -> None:
    marker = _forward_marker(store, ino)
    if not marker.exists():
        return
    if any((r := store.read(n)) is not None and r.host_netns == ino for n in store.names()):
        return
    was = json.loads(marker.read_text()).get("ip_forward_was", "0")
    netenv.set_forwarding("1" if was == "1" else "0")
    netenv.nft_delete_table(model.FORWARD_GUARD_TABLE)
    marker.unlink()


def _is_charon(pid: int) -> bool:
    try:
        return b"charon" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def down(name: str, store: Store) -> dict[str, Any]:
    model.check_name(name)
    require_root()
    rec = store.read(name)
    if rec is not None and invoker().uid != 0:  # root itself (not a sudo caller) may clean up
        _check_owner(rec, "remove")
    elif not (netenv.link_exists(model.host_ifname(name))
              or model.host_table(name) in netenv.nft_tables()):
        raise UsageError(f"no environment {name}")
    with store.locked():
        try:
            removed = teardown(name, store)
        except IkemgrError:
            raise
        except Exception as e:  # netlink/nftables/OS: one line; run down again once fixed
            raise ApplyFailed(f"client down {name} stopped: {type(e).__name__}: {e}") from e
    return {"name": name, "removed": removed}


def _check_owner(rec: Record, what: str) -> None:
    who = invoker()
    if who.uid != rec.owner_uid:
        raise Refused(f"environment {rec.name} belongs to uid {rec.owner_uid}; uid {who.uid} "
                      f"may not {what} it")


# --------------------------------------------------------------------------- list


def _view(rec: Record, sa: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    return {"name": rec.name, "owner_uid": rec.owner_uid, "identity": rec.identity,
            "vip": rec.vip, "gateway": rec.gateway, "uplink": rec.uplink, "ipsec": rec.ipsec,
            "dns": rec.dns, "phase": rec.phase, "state": sa["state"],
            "uptime": round(now - rec.started) if rec.started else 0,
            "bytes_in": sa["bytes_in"], "bytes_out": sa["bytes_out"],
            "charon_pid": rec.pids.get("charon")}


def listing(store: Store) -> list[dict[str, Any]]:
    require_root()
    out = []
    for n in store.names():
        rec = store.read(n)
        if rec is None:
            continue
        vici_path = store.workdir(n) / "charon.vici"
        pid = rec.pids.get("charon")
        sa = ike.summary([], rec.connection)
        if pid and procs.alive(pid) and _is_charon(pid) and vici_path.exists():
            sa = ike.summary(ike.list_sas(vici_path), rec.connection)
        else:
            sa["state"] = "CHARON GONE"
        out.append(_view(rec, sa))
    return out


# --------------------------------------------------------------------------- exec


def exec_argv(name: str, argv: list[str], store: Store, as_root: bool = False
              ) -> tuple[list[str], dict[str, str]]:
    """The argv (and environment) that runs ``argv`` in NAME as its owner; checks first.

    ``ip netns exec`` enters the netns in a private mount namespace and bind-mounts
    /etc/netns/NAME/resolv.conf over /etc/resolv.conf; ``setpriv`` then drops to the
    invoking user, so the program never runs as root unless root owns the environment
    and asked for it (``--root``).
    """
    model.check_name(name)
    if not argv:
        raise UsageError("client exec: give the program after --, e.g. -- curl https://…")
    require_root()
    rec = store.read(name)
    if rec is None or not netenv.netns_exists(name):
        raise UsageError(f"no environment {name}")
    _check_owner(rec, "use")
    if rec.phase != "up":
        raise Refused(f"environment {name} is not up ({rec.phase})")
    ip = shutil.which("ip") or "/usr/sbin/ip"
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    env = dict(os.environ)
    if rec.owner_uid == 0:
        if not as_root:
            raise Refused(f"environment {name} belongs to root: pass --root to run as root")
        return [ip, "netns", "exec", name, *argv], env
    try:
        pw = pwd.getpwuid(rec.owner_uid)
        groups = ["--init-groups"]
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    except KeyError:
        groups = ["--clear-groups"]
    return ([ip, "netns", "exec", name, setpriv, "--reuid", str(rec.owner_uid),
             "--regid", str(rec.owner_gid), *groups, "--", *argv], env)
