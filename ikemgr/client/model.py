"""The environment model, pure: names, the profile contract, the uplink /30, nftables JSON.

Nothing here touches the kernel, a file or the clock, so every rule a hostile input could
hit (the name, the profile's swanctl.conf, the EAP password) is decided here and tested by
tables (tests/unit/test_client_model.py) before any namespace exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ikemgr.errors import UsageError

# The name becomes a netns name, /etc/netns/NAME, a state file and part of the host-side
# interface name ikc-NAME, which the kernel limits to 15 bytes: so 11 characters at most.
_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,10}")
HOST_IF_PREFIX = "ikc-"
ENV_IF = "uplink0"
TUN_IF = "ipsec0"
# Link-local: a campus never routes it, so the environment's connected /30 can never
# shadow a campus address inside the tunnel; host collisions are checked at `up`.
DEFAULT_UPLINK_RANGE = IPv4Network("169.254.64.0/24")
HOST_TABLE_PREFIX = "ikemgr-client-"
FORWARD_GUARD_TABLE = "ikemgr-client-fwd"
ENV_TABLE = "ikemgr-client"


def shown(value: str, limit: int = 40) -> str:
    """A hostile value made safe for one error line: ASCII repr, cut to ``limit``."""
    r = ascii(value)
    return r if len(r) <= limit else r[:limit] + "…'"


def check_name(name: str) -> str:
    """The environment name, or UsageError (exit 2) before anything is created."""
    if not _NAME_RE.fullmatch(name) or name.endswith("-"):
        raise UsageError(f"environment name {shown(name)} refused: use 1-11 characters "
                         "a-z 0-9 -, starting with a letter")
    return name


def host_ifname(name: str) -> str:
    return HOST_IF_PREFIX + check_name(name)


def host_table(name: str) -> str:
    return HOST_TABLE_PREFIX + check_name(name)


# --------------------------------------------------------------------------- swanctl.conf

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}=\n]|#[^\n]*|[^\s{}=#"]+|[ \t\r]+')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}

Settings = dict[str, Any]  # value: str or a nested Settings


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def parse_settings(text: str) -> Settings:
    """strongSwan's settings syntax (sections, ``key = value``), as swanctl.conf uses it.

    ``include`` is refused: a profile is one self-contained directory.
    """
    pos = 0
    tokens: list[str] = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise UsageError(f"profile swanctl.conf: cannot parse near offset {pos}")
        tok = m.group(0)
        pos = m.end()
        if tok[0] in " \t\r#":
            continue
        tokens.append(tok)
    root: Settings = {}
    stack = [root]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "\n":
            i += 1
        elif tok == "}":
            if len(stack) == 1:
                raise UsageError("profile swanctl.conf: unbalanced '}'")
            stack.pop()
            i += 1
        elif tok == "include":
            raise UsageError("profile swanctl.conf: 'include' is not allowed in a profile")
        elif i + 1 < len(tokens) and tokens[i + 1] == "{":
            sect = stack[-1].setdefault(tok, {})
            if not isinstance(sect, dict):
                raise UsageError(f"profile swanctl.conf: {shown(tok)} is both a value and a section")
            stack.append(sect)
            i += 2
        elif i + 1 < len(tokens) and tokens[i + 1] == "=":
            j = i + 2
            parts = []
            while j < len(tokens) and tokens[j] not in ("\n", "}"):
                parts.append(_unquote(tokens[j]) if tokens[j].startswith('"') else tokens[j])
                j += 1
            stack[-1][tok] = " ".join(parts)
            i = j
        else:
            raise UsageError(f"profile swanctl.conf: unexpected {shown(tok)}")
    if len(stack) != 1:
        raise UsageError("profile swanctl.conf: a section is not closed")
    return root


def quote(value: str) -> str:
    """A strongSwan settings string literal; control characters are refused, not escaped."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UsageError("a value with control characters cannot go into swanctl.conf")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_CONN_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
AUTHS = ("eap-mschapv2", "eap-tls", "pubkey")


@dataclass(frozen=True)
class Profile:
    """What ``client up`` needs to know of the profile's one connection."""

    connection: str
    child: str
    remote_addrs: str
    remote_id: str
    auth: str
    eap_id: str | None
    certs: tuple[str, ...]

    @property
    def identity(self) -> str:
        return self.eap_id or self.remote_id


def _section(s: Settings, key: str, what: str) -> Settings:
    v = s.get(key)
    if not isinstance(v, dict):
        raise UsageError(f"profile swanctl.conf: {what} is missing")
    return v


def _value(s: Settings, key: str, what: str) -> str:
    v = s.get(key)
    if not isinstance(v, str) or not v:
        raise UsageError(f"profile swanctl.conf: {what} is missing")
    return v


def profile_of(text: str) -> Profile:
    """Check the contract of ``ikemgr profile --format swanctl`` and extract its facts."""
    s = parse_settings(text)
    conns = _section(s, "connections", "connections { }")
    if len(conns) != 1:
        raise UsageError(f"profile swanctl.conf: exactly one connection expected, found {len(conns)}")
    (name, conn), = conns.items()
    if not isinstance(conn, dict) or not _CONN_RE.fullmatch(name):
        raise UsageError(f"profile swanctl.conf: connection name {shown(name)} refused")
    remote = _section(conn, "remote", f"connections.{name}.remote")
    local = _section(conn, "local", f"connections.{name}.local")
    vips = conn.get("vips", "")
    if vips not in ("0.0.0.0", "0.0.0.0,::", "0.0.0.0, ::"):
        raise UsageError(f"profile swanctl.conf: connections.{name}.vips must be 0.0.0.0")
    children = _section(conn, "children", f"connections.{name}.children")
    if len(children) != 1:
        raise UsageError(f"profile swanctl.conf: exactly one child expected, found {len(children)}")
    child = next(iter(children))
    if not _CONN_RE.fullmatch(child):
        raise UsageError(f"profile swanctl.conf: child name {shown(child)} refused")
    auth = _value(local, "auth", f"connections.{name}.local.auth")
    if auth not in AUTHS:
        raise UsageError(f"profile swanctl.conf: local auth {shown(auth)} is not one of "
                         f"{', '.join(AUTHS)}")
    eap_id = local.get("eap_id") if auth.startswith("eap-") else None
    if auth.startswith("eap-") and not eap_id:
        raise UsageError(f"profile swanctl.conf: connections.{name}.local.eap_id is missing")
    certs = tuple(c.strip() for c in str(local.get("certs", "")).split(",") if c.strip())
    if auth in ("eap-tls", "pubkey") and not certs:
        raise UsageError(f"profile swanctl.conf: connections.{name}.local.certs is missing ({auth})")
    for c in certs:
        if "/" in c or c in (".", ".."):
            raise UsageError(f"profile swanctl.conf: certs {shown(c)} must be a file name in x509/")
    addrs = _value(conn, "remote_addrs", f"connections.{name}.remote_addrs")
    if "," in addrs or not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", addrs):
        raise UsageError(f"profile swanctl.conf: remote_addrs {shown(addrs)} must be one address "
                         "or host name")
    return Profile(name, child, addrs, _value(remote, "id", f"connections.{name}.remote.id"),
                   auth, eap_id, certs)


def private_additions(p: Profile, gateway: IPv4Address, password: str | None,
                      updown: str | None = None) -> str:
    """Appended to the environment's private swanctl.conf copy (settings sections merge).

    ``remote_addrs`` is pinned to the address resolved on the host, because the
    environment's own DNS exists only once the tunnel is up; the EAP password lives only
    here (0600, root-only directory), never in the profile.
    """
    child = (f"        children {{\n            {p.child} {{\n                updown = {quote(updown)}\n"
             "            }\n        }\n") if updown is not None else ""
    out = ("\n# added by ikemgr client up\n"
           f"connections {{\n    {p.connection} {{\n        remote_addrs = {gateway}\n"
           f"{child}    }}\n}}\n")
    if password is not None:
        if p.eap_id is None:
            raise UsageError("--password-file given, but the profile's auth uses no EAP identity")
        out += ("secrets {\n    eap-ikemgr-client {\n"
                f"        id = {quote(p.eap_id)}\n        secret = {quote(password)}\n    }}\n}}\n")
    return out


def check_password(raw: bytes) -> str:
    """The EAP password file: UTF-8, one line (a trailing newline is dropped), ≤ 256 chars."""
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    try:
        pw = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("--password-file: the password is not UTF-8") from None
    if not pw or len(pw) > 256 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in pw):
        raise UsageError("--password-file: expected one line of 1-256 printable characters")
    return pw


# --------------------------------------------------------------------------- addresses


def choose_uplink(used: list[IPv4Network], candidates: IPv4Network = DEFAULT_UPLINK_RANGE
                  ) -> IPv4Network:
    """The first /30 of ``candidates`` that overlaps no route or address already in use.

    Default routes (prefix length 0) do not count: everything overlaps them, and a more
    specific connected route wins anyway.
    """
    for net in candidates.subnets(new_prefix=30):
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise UsageError(f"no free /30 left in {candidates} for the environment's uplink")


def uplink_addresses(net: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    """(host side, environment side) of the /30."""
    hosts = list(net.hosts())
    return hosts[0], hosts[1]


# --------------------------------------------------------------------------- nftables (JSON)


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ifname(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


_CT_OK = _match({"ct": {"key": "state"}}, ["established", "related"], "in")


def _table_cmds(table: str, chains: list[tuple[str, str, str, int, list[list[dict[str, Any]]]]]
                ) -> dict[str, Any]:
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": "ip", "name": table}}}]
    for chain, ctype, hook, prio, rules in chains:
        cmds.append({"add": {"chain": {"family": "ip", "table": table, "name": chain,
                                       "type": ctype, "hook": hook, "prio": prio,
                                       "policy": "accept"}}})
        for expr in rules:
            cmds.append({"add": {"rule": {"family": "ip", "table": table, "chain": chain,
                                          "expr": expr}}})
    return {"nftables": cmds}


def host_ruleset(name: str, uplink: IPv4Network) -> dict[str, Any]:
    """The host side of one environment: masquerade its /30, forward only what it opened."""
    veth = host_ifname(name)
    src = _match({"payload": {"protocol": "ip", "field": "saddr"}},
                 {"prefix": {"addr": str(uplink.network_address), "len": uplink.prefixlen}})
    return _table_cmds(host_table(name), [
        ("postrouting", "nat", "postrouting", 100,
         [[src, _match(_ifname("oifname"), veth, "!="), {"masquerade": None}]]),
        ("forward", "filter", "forward", 0,
         [[_match(_ifname("iifname"), veth), {"accept": None}],
          [_match(_ifname("oifname"), veth), _CT_OK, {"accept": None}],
          [_match(_ifname("oifname"), veth), {"drop": None}]]),
    ])


def forward_guard_ruleset() -> dict[str, Any]:
    """Only when ikemgr switched ``ip_forward`` on: forward nothing but environments' traffic."""
    wild = HOST_IF_PREFIX + "*"
    return _table_cmds(FORWARD_GUARD_TABLE, [
        ("forward", "filter", "forward", -10,
         [[_match(_ifname("iifname"), wild), {"accept": None}],
          [_match(_ifname("oifname"), wild), {"accept": None}],
          [{"drop": None}]]),
    ])


def env_ruleset(only_to: IPv4Address | None = None) -> dict[str, Any]:
    """Inside the environment: nothing from the host side may open a connection into it.

    With ``only_to`` (userspace ESP: only charon itself talks over the uplink, to the
    gateway) nothing else may leave through the uplink either, so a program that binds
    the uplink address, or a tunnel that is down, fails closed instead of leaking
    around the tunnel. (With kernel ESP the plaintext packet passes this hook before it
    is encrypted, so the rule would drop the tunnel itself; it is left out there.)
    """
    chains: list[tuple[str, str, str, int, list[list[dict[str, Any]]]]] = [
        ("input", "filter", "input", 0,
         [[_match(_ifname("iifname"), ENV_IF), _CT_OK, {"accept": None}],
          [_match(_ifname("iifname"), ENV_IF), {"drop": None}]]),
    ]
    if only_to is not None:
        daddr = {"payload": {"protocol": "ip", "field": "daddr"}}
        chains.append(("output", "filter", "output", 0,
                       [[_match(_ifname("oifname"), ENV_IF), _match(daddr, str(only_to), "!="),
                         {"drop": None}]]))
    return _table_cmds(ENV_TABLE, chains)


def delete_table(table: str) -> dict[str, Any]:
    return {"nftables": [{"delete": {"table": {"family": "ip", "name": table}}}]}


# --------------------------------------------------------------------------- resolv.conf


def updown_dns(env_text: str) -> list[str]:
    """The ``PLUTO_DNS4_n=``/``PLUTO_DNS6_n=`` lines charon's updown saw, in order."""
    found = []
    for line in env_text.splitlines():
        m = re.fullmatch(r"PLUTO_DNS([46])_([0-9]{1,2})=([0-9A-Fa-f.:]{2,39})", line.strip())
        if m:
            found.append((m.group(1), int(m.group(2)), m.group(3)))
    return [a for _f, _n, a in sorted(found)]


def resolv_conf(servers: list[str], name: str) -> str:
    head = f"# ikemgr client environment {name}: DNS servers handed out by the gateway\n"
    if not servers:
        return head + "# (the gateway handed out none)\n"
    return head + "".join(f"nameserver {s}\n" for s in servers)
