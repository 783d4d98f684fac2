"""Small probes of the running host for ``ikemgr check`` (reads only; never changes anything).

Each probe returns plain data (``interop.CertFacts``, ``interop.HostState``,
``interop.RadiusProbe``) that ``checks/interop.py`` turns into findings, so the findings
are unit-tested with fakes while these probes are tested against a real namespace.

Sysctls under ``/proc/sys/net`` belong to the network namespace of the *thread* that
reads them, so with ``--netns`` they are read from a thread that has entered it
(``InNetns``); rules come from the rule channel's RTM_GETRULE dump, routes and links from
``ip -N -j`` (``-n NS``), argv lists only.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from ikemgr.adapters.kernel.netns import InNetns, check_netns
from ikemgr.adapters.kernel.rule_channel import RuleChannel
from ikemgr.adapters.radius import RadiusClient  # issue 10: adapters/radius.py (probe)
from ikemgr.checks.interop import CertFacts, HostRule, HostState, RadiusProbe, sysctl_keys
from ikemgr.config.schema import Config
from ikemgr.core.model import Rule
from ikemgr.errors import BackendUnavailable

PROC_SYS = Path("/proc/sys")
IPROUTE2_DIR = Path("/etc/iproute2")


# --------------------------------------------------------------------------- certificates


def _load_cert(data: bytes) -> x509.Certificate:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def cert_facts(cert_path: Path, ca_path: Path) -> CertFacts:
    """Read the server certificate and verify that ``ca_path`` issued it."""
    try:
        cert = _load_cert(cert_path.read_bytes())
    except OSError as e:
        return CertFacts(str(cert_path), error=e.strerror or str(e))
    except ValueError as e:
        return CertFacts(str(cert_path), error=f"not an X.509 certificate ({e})")
    try:
        ekus = frozenset(o.dotted_string for o in
                         cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        ekus = frozenset()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    chain_error: str | None = None
    try:
        ca = _load_cert(ca_path.read_bytes())
    except (OSError, ValueError) as e:
        chain_error = f"CA {ca_path} unreadable: {getattr(e, 'strerror', None) or e}"
    else:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError) as e:
            chain_error = str(e)
        except Exception as e:  # cryptography raises InvalidSignature (no common base class)
            chain_error = f"signature does not verify with the CA's key ({type(e).__name__})"
    return CertFacts(
        str(cert_path), subject=cert.subject.rfc4514_string(), ekus=ekus, dns_sans=dns,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        chain_error=chain_error)


def now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- sysctls, links


def _read_sysctls(keys: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k in keys:
        try:
            out[k] = (PROC_SYS / k).read_text().strip()
        except OSError:
            out[k] = None
    return out


def _ip(netns: str | None, *args: str) -> list[dict[str, object]]:
    argv = ["ip", "-N", "-j", *(["-n", netns] if netns else []), *args]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BackendUnavailable("netlink", f"{' '.join(argv)}: {e}") from None
    if p.returncode != 0 and "table does not exist" in p.stderr:
        return []  # a table nobody has created yet holds no routes
    if p.returncode != 0:
        raise BackendUnavailable("netlink", f"{' '.join(argv)}: {p.stderr.strip()[:200]}")
    data = json.loads(p.stdout or "[]")
    return data if isinstance(data, list) else []


def _num(v: object, default: int = 0) -> int:
    try:
        return int(str(v))
    except ValueError:
        return default


def kernel_rules(netns: str | None) -> tuple[HostRule, ...]:
    """Every IPv4 rule of the namespace, whoever owns it: one RTM_GETRULE dump on the rule
    channel (the same socket and decoder the policy engine reads its own rules with)."""

    def dump() -> list[tuple[Rule, int | None]]:
        chan = RuleChannel()
        try:
            return chan.dump()
        finally:
            chan.close()

    with InNetns(netns) as ex:
        try:
            rules = ex.call(dump)
        except (OSError, ValueError) as e:
            raise BackendUnavailable("netlink", f"rule dump: {e}") from None
    return tuple(HostRule(r.priority, r.table if r.action == "lookup" else None, proto or 0,
                            r.ip_args(protocol=proto)) for r, proto in rules)


def route_protocols(netns: str | None, tables: list[int]) -> dict[int, tuple[int, ...]]:
    out: dict[int, tuple[int, ...]] = {}
    for t in tables:
        routes = _ip(netns, "route", "show", "table", str(t))
        # routes without "protocol" are boot (3) in iproute2's numbering
        out[t] = tuple(_num(r.get("protocol"), 3) for r in routes)
    return out


def rt_tables_entries(iproute2_dir: Path, own_file: Path) -> tuple[tuple[int, str, str], ...]:
    """Every ``id name`` line of rt_tables and rt_tables.d/*.conf except ikemgr's own file."""
    files = [iproute2_dir / "rt_tables", *sorted((iproute2_dir / "rt_tables.d").glob("*.conf"))]
    usr = Path("/usr/share/iproute2/rt_tables")
    if iproute2_dir == IPROUTE2_DIR and usr.exists():
        files.insert(0, usr)
    out = []
    for f in files:
        try:
            if f.resolve() == own_file.resolve():
                continue
            text = f.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2 and parts[0].isdigit():
                out.append((int(parts[0]), parts[1], str(f)))
    return tuple(out)


def host_state(cfg: Config, netns: str | None = None, iproute2_dir: Path = IPROUTE2_DIR) -> HostState:
    if netns is not None:
        check_netns(netns)
    keys = sysctl_keys(cfg)
    with InNetns(netns) as ex:
        sysctls = ex.call(_read_sysctls, keys)
    links = frozenset(str(link.get("ifname")) for link in _ip(netns, "link", "show"))
    tables = [cfg.gateway.campus.table.id, *(v.table_id for v in cfg.vlans)]
    return HostState(netns=netns, sysctls=sysctls, interfaces=links, rules=kernel_rules(netns),
                     route_protocols=route_protocols(netns, tables),
                     rt_tables=rt_tables_entries(iproute2_dir, cfg.routing.rt_tables_file))


# --------------------------------------------------------------------------- RADIUS


def radius_probe(cfg: Config, secret: str) -> RadiusProbe:
    """One Access-Request with a random password: a reject proves the server answers us."""
    r = cfg.radius
    server = f"{r.address}:{r.auth_port}"
    client = RadiusClient(r.address, r.auth_port, secret, timeout=r.timeout, retries=r.retries,
                          nas_identifier=r.nas_identifier)
    try:
        v = client.pap("ikemgr-check-probe", os.urandom(12).hex())
    except BackendUnavailable as e:
        return RadiusProbe(server, None, e.message)
    return RadiusProbe(server, v.outcome, None, v.rtt_ms)
