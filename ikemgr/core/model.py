"""Frozen values of the policy engine: what charon tells us, what the kernel must hold.

Everything here is plain data: adapters decode charon's bytes dicts, updown environment
variables and kernel dumps into these types at the edge, and the pure decision
(``core.policy``) and diff (``core.plan``) work only on them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from ipaddress import IPv4Address
from typing import Protocol

#: IKE_SA states in which the SA holds its virtual IPs and its user is connected.
#: REKEYED is the old half of an IKE rekey: its VIPs now belong to the new SA.
LIVE_STATES = frozenset({"ESTABLISHED", "REKEYING"})


@dataclass(frozen=True)
class Sa:
    """One IKE_SA, keyed by charon's ``uniqueid`` (addresses move, VIPs are shared on reauth)."""

    uniqueid: str
    identity_raw: str | bytes | None
    vips: tuple[IPv4Address, ...]
    state: str
    conn: str = ""
    remote_host: str = ""
    established: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES and bool(self.vips)

    def sort_key(self) -> tuple[int, str]:
        """Newest SA last: unique ids are increasing decimal numbers in charon."""
        return (int(self.uniqueid), "") if self.uniqueid.isdigit() else (-1, self.uniqueid)


@dataclass(frozen=True, order=True)
class UserRule:
    """The policy one VIP must have: its campus traffic goes to ``table_id`` (lab VLAN ``vlan``)."""

    vip: IPv4Address
    vlan: int
    table_id: int
    priority: int


class Outcome(StrEnum):
    ALLOWED = "allowed"
    NOT_ON_LIST = "not-on-list"
    NO_VLAN = "no-vlan"
    UNKNOWN_VLAN = "unknown-vlan"
    REJECTED_IDENTITY = "rejected-identity"
    NO_VIP = "no-vip"
    LEASE_MISMATCH = "lease-mismatch"


@dataclass(frozen=True)
class Decision:
    """Why one SA does or does not get a rule; one structured log line each."""

    uniqueid: str
    identity: str  # the validated identity, or its log-safe rendering if rejected
    outcome: Outcome
    vips: tuple[IPv4Address, ...]
    account: str | None = None
    vlan: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class DesiredState:
    rules: Mapping[IPv4Address, UserRule]
    decisions: tuple[Decision, ...]


class AllowList(Protocol):
    """The registration DB as the engine sees it: which (account, VLAN) pairs are allowed now."""

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]: ...




log = logging.getLogger("ikemgr.vici")


@dataclass(frozen=True)
class SaUpdate:
    """What one event says about one SA: it is there (``present``) or it went away."""

    event: str
    sa: Sa
    present: bool
