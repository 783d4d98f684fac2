"""Replay a client's default proposal set with a strongSwan initiator and watch its SAs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ikc_support import sas

from ikemgr.checks.charon import CharonInstance
from ikemgr.checks.client_proposals import ClientDefaults
from ikemgr.checks.interop import ClientVerdict

#: the model's group names → charon's names in list-sas
DH_NAMES = {"x25519": "CURVE_25519", "ecp256": "ECP_256", "modp2048": "MODP_2048",
            "modp1024": "MODP_1024", "modp1536": "MODP_1536", "x448": "CURVE_448"}


def replay_esp(client: ClientDefaults, v: ClientVerdict) -> str:
    """The client's ESP list as a strongSwan initiator sends it at IKE_AUTH and on rekey.

    charon strips key exchange groups from the CHILD_SA in IKE_AUTH and uses them on rekey:
    iOS (KE in the IKE group, plus a proposal without) becomes ``<p>-<group>-modpnone``;
    the others rekey without KE, so their proposals carry no group.
    """
    if client.rekey_pfs == "none" or v.ike is None or v.ike.dh is None:
        return ",".join(client.esp)
    return ",".join(f"{p}-{v.ike.dh}-modpnone" for p in client.esp)


@dataclass
class Watch:
    """What one connection's SAs did while polled: distinct ids, gaps, negotiated algorithms."""

    conn: str
    ike_ids: set[str] = field(default_factory=set)
    child_ids: set[str] = field(default_factory=set)
    samples: int = 0
    gaps: int = 0  # samples with no ESTABLISHED IKE SA holding an INSTALLED CHILD_SA
    first_ike: dict[str, Any] | None = None
    first_child: dict[str, Any] | None = None
    packets_in: int = 0  # ESP packets received, summed over the CHILD_SAs seen (last sample each)
    _last_in: dict[str, int] = field(default_factory=dict)


def poll(inst: CharonInstance, conns: list[str], seconds: float, step: float = 0.5) -> dict[str, Watch]:
    watches = {c: Watch(c) for c in conns}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        all_sas = sas(inst)
        for c, w in watches.items():
            w.samples += 1
            up = False
            for sa in (s for s in all_sas if s["name"] == c):
                w.ike_ids.add(sa["uniqueid"])
                if w.first_ike is None and sa.get("state") == "ESTABLISHED":
                    w.first_ike = sa
                for child in (sa.get("child-sas") or {}).values():
                    w.child_ids.add(child["uniqueid"])
                    w._last_in[child["uniqueid"]] = int(child.get("packets-in", 0))
                    w.packets_in = sum(w._last_in.values())
                    if child.get("state") == "INSTALLED":
                        if w.first_child is None:
                            w.first_child = child
                        if sa.get("state") == "ESTABLISHED":
                            up = True
            if not up:
                w.gaps += 1
        time.sleep(step)
    return watches
