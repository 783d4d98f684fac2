"""strongSwan's VICI socket: a pure codec (``codec``) and the sessions that carry it (``session``).

The codec turns messages and events into ``core.model`` values (``Sa``, ``SaUpdate``)
and can be tested on recorded bytes; the sessions own the socket. Everything that
talks to charon — ``watch``, the one-shot commands, the lab — uses these two.
"""

from ikemgr.adapters.vici.codec import (
    EVENTS,
    MessageError,
    decode_message,
    identity_of,
    parse_event,
    parse_leases,
    parse_list_sas,
    sa_of,
    vips_of,
)
from ikemgr.adapters.vici.session import CommandSession, EventSession, connect

__all__ = ["EVENTS", "CommandSession", "EventSession", "MessageError", "connect", "decode_message",
           "identity_of", "parse_event", "parse_leases", "parse_list_sas", "sa_of", "vips_of"]
