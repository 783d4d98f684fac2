"""strongSwan Android ``.sswan``: the app's JSON profile format (VPN Profile Import, app 1.8+).

Serialised with ``json`` (no templating). The app parses ``ike-proposal``/``esp-proposal``
as one strongSwan proposal each, where ``default`` is not an algorithm: the first explicit
server proposal goes there (the app sends it first, so the server's first preference
matches without an INVALID_KE round trip). The app always does MOBIKE and fragmentation.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ikemgr.render.profiles.common import ProfileFile, ProfileInput

TYPES = {"eap": "ikev2-eap", "tls": "ikev2-eap-tls", "cert": "ikev2-cert"}


def build(inp: ProfileInput) -> list[ProfileFile]:
    sp = inp.proposals
    doc: dict[str, Any] = {
        "uuid": inp.uuid("sswan").lower(),
        "name": inp.display_name,
        "type": TYPES[inp.auth],
        "remote": {"addr": inp.remote, "id": inp.fqdn,
                   "cert": base64.b64encode(inp.ca_der).decode()},
        "local": {},
    }
    if inp.auth == "eap":
        doc["local"]["eap_id"] = inp.identity
    else:
        if inp.credential is None:
            raise ValueError("a certificate login needs the user's PKCS#12 (--cert)")
        doc["local"]["p12"] = base64.b64encode(inp.credential.p12).decode()
        doc["local"]["id"] = inp.identity
    ike, esp = sp.explicit("ike"), sp.explicit("esp")
    if ike:
        doc["ike-proposal"] = ike[0]
    if esp:
        doc["esp-proposal"] = esp[0]
    if inp.tunnel == "split":
        doc["split-tunneling"] = {"subnets": " ".join(str(n) for n in inp.remote_ts())}
    else:
        # the gateway tunnels IPv4 only: in a full tunnel, IPv6 would leave outside it
        doc["split-tunneling"] = {"block-ipv6": True}
    return [ProfileFile("", (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(),
                        0o600 if inp.credential else 0o644)]
