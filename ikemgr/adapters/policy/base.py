"""The interface of the two kernel policy backends (config: ``policy.backend``).

Both own only what they can recognise: rules with protocol ``routing.rule_protocol``
and a priority in [user_priority, base_priority), and the table ``ip ikemgr_policy``.
``read`` returns the complete user rules plus strays to delete; ``apply`` changes the
kernel from a plan in one batch; what a plan adds is absent from the kernel by the
engine's index.
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol

from ikemgr.config.schema import Config
from ikemgr.core.model import UserRule
from ikemgr.core.policy_diff import Plan

log = logging.getLogger("ikemgr.backend")


@dataclass
class KernelView:
    """What the kernel holds that ikemgr owns: complete user rules, plus strays to delete."""

    rules: dict[IPv4Address, UserRule]
    stray: list[Any] = field(default_factory=list)
    vlan_rules: dict[int, bool] = field(default_factory=dict)


class PolicyBackend(Protocol):
    name: str
    #: whether ``apply`` reads its ``tables`` (the VLAN tables in use after the plan): the
    #: engine computes them for a backend that does, and passes an empty set otherwise
    needs_tables: bool

    def ensure(self) -> None: ...
    def read(self) -> KernelView: ...
    def apply(self, plan: Plan, tables: AbstractSet[int]) -> None:
        """``tables``: the VLAN tables that hold a VIP once the plan is applied."""
        ...
    def close(self) -> None: ...


def owned_band(cfg: Config) -> tuple[int, int]:
    return cfg.routing.user_priority, cfg.routing.base_priority
