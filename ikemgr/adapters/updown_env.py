"""strongSwan's updown environment (PLUTO_*) → the same SaUpdate the VICI events give.

charon runs the updown script once per CHILD_SA traffic-selector pair, with the IKE_SA's
unique id, the peer's virtual IP and the EAP/XAuth identity in the environment. Decoding
it here lets ``ikemgr hook`` feed the very same decision and reconcile code as ``watch``.
The environment is untrusted text: nothing in it reaches a shell or a pattern.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

from ikemgr.core.model import Sa, SaUpdate
from ikemgr.errors import UsageError

UP_VERBS = frozenset({"up-client", "up-host", "up-client-v6", "up-host-v6"})
DOWN_VERBS = frozenset({"down-client", "down-host", "down-client-v6", "down-host-v6"})


@dataclass(frozen=True)
class HookCall:
    verb: str
    update: SaUpdate | None  # None: a verb ikemgr does not act on (e.g. prepare-host)


def _env_bytes(env: Mapping[str, str], key: str) -> str | bytes | None:
    v = env.get(key)
    if v is None or v == "":
        return None
    # os.environ holds undecodable bytes as surrogates; give the grammar the raw bytes
    try:
        v.encode("utf-8")
        return v
    except UnicodeEncodeError:
        return os.fsencode(v)


def parse_env(env: Mapping[str, str]) -> HookCall:
    verb = env.get("PLUTO_VERB", "")
    if not verb:
        raise UsageError("PLUTO_VERB is not set: ikemgr hook is meant to run as charon's updown")
    if verb not in UP_VERBS and verb not in DOWN_VERBS:
        return HookCall(verb, None)
    uid = env.get("PLUTO_UNIQUEID", "")
    if not (uid.isascii() and uid.isdigit() and len(uid) <= 12):
        raise UsageError(f"PLUTO_UNIQUEID {uid[:20]!r} is not a unique id")
    vips: tuple[IPv4Address, ...] = ()
    for item in env.get("PLUTO_PEER_SOURCEIP", "").replace(",", " ").split():
        try:
            addr = ip_address(item)
        except ValueError:
            raise UsageError(f"PLUTO_PEER_SOURCEIP {item[:48]!r} is not an address") from None
        if isinstance(addr, IPv4Address):
            vips += (addr,)
    ident = _env_bytes(env, "PLUTO_XAUTH_ID") or _env_bytes(env, "PLUTO_PEER_ID")
    up = verb in UP_VERBS
    sa = Sa(uniqueid=uid, identity_raw=ident, vips=vips,
            state="ESTABLISHED" if up else "DELETING",
            conn=env.get("PLUTO_CONNECTION", "")[:64],
            remote_host=env.get("PLUTO_PEER", "")[:64])
    return HookCall(verb, SaUpdate("updown", sa, up and sa.live))
