"""The one place ``ikemgr.client`` imports ikemgr's runtime edges (repointed at merge).

charon runs through the project's ``CharonInstance`` (own strongswan.conf, private /run
and VICI socket, started in a named netns); per-thread netns entry for libnftables is
``InNetns``.
"""

from __future__ import annotations

from ikemgr.adapters.kernel.netns import InNetns
from ikemgr.checks.charon import (
    BASE_PLUGINS,
    INITIATOR_PLUGINS,
    LIBIPSEC_PLUGINS,
    NETLINK_PLUGINS,
    CharonInstance,
)

__all__ = ["BASE_PLUGINS", "INITIATOR_PLUGINS", "LIBIPSEC_PLUGINS", "NETLINK_PLUGINS",
           "CharonInstance", "InNetns"]
