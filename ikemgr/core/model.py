"""Frozen values of the policy engine: what charon tells us, what the kernel must hold.

Everything here is plain data: adapters decode charon's bytes dicts, updown environment
variables and kernel dumps into these types at the edge, and the pure decision
(``core.policy``) and diff (``core.policy_diff``) work only on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Network
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


ALL_ONES = 0xFFFFFFFF
Network = IPv4Network | IPv6Network


@dataclass(frozen=True, order=True)
class Rule:
    """One kernel policy rule, as ikemgr makes and reads it: the one rule value of both diffs.

    The base rules (``from <pool> to <campus> lookup <campus table>``), the ``rules``
    backend's per-user rules and the ``marks`` backend's fwmark/goto/nop rules are all
    this value; the rtnetlink channel encodes and decodes it. ``action`` is ``lookup``,
    ``goto`` or ``nop``; a rule read from the kernel in a shape ikemgr never makes
    (inverted, another family, iif/oif/tos selectors) reads back as ``foreign``.
    """

    priority: int
    table: int = 0
    src: Network | None = None
    dst: Network | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    action: str = "lookup"
    goto: int | None = None

    def __post_init__(self) -> None:
        # a mark without a mask matches all of it: one spelling, so rules compare equal
        if self.fwmark is not None and self.fwmask is None:
            object.__setattr__(self, "fwmask", ALL_ONES)

    def ip_args(self, table_name: str | None = None, protocol: int | None = None) -> str:
        """iproute2 ``ip rule`` syntax from typed values only (plans, logs, the routing description)."""
        out = f"priority {int(self.priority)}"
        if self.src is not None:
            out += f" from {self.src}"
        if self.dst is not None:
            out += f" to {self.dst}"
        if self.fwmark is not None:
            mask = self.fwmask if self.fwmask is not None else ALL_ONES
            out += f" fwmark {int(self.fwmark):#x}/{int(mask):#x}"
        if self.action == "goto":
            out += f" goto {int(self.goto or 0)}"
        elif self.action == "nop":
            out += " nop"
        else:
            out += f" lookup {table_name or int(self.table)}"
        return out + (f" protocol {int(protocol)}" if protocol is not None else "")


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

    def pair_ends(self, now: datetime) -> Mapping[tuple[str, int], datetime]:
        """When each pair in force at ``now`` stops being in force, for pairs whose every
        grant has an end (the snapshot drops them at that time during an outage)."""
        ...

    def next_change(self, now: datetime) -> datetime | None:
        """The first moment after ``now`` at which ``active_pairs`` changes by the clock alone
        (a grant starts or ends, with no write); None when no grant ever will."""
        ...


@dataclass(frozen=True)
class SaUpdate:
    """What one event says about one SA: it is there (``present``) or it went away."""

    event: str
    sa: Sa
    present: bool
