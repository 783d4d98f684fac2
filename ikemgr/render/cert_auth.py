"""Config → the template context of the certificate-only swanctl connection (pure).

The swanctl template prints a second connection when ``strongswan_cert_auth.enabled``;
every value it prints is computed here (the template stays dumb). The connection shares
the EAP connection's pool, proposals, lifetimes and updown line, so a certificate user
gets a VIP from the same pool and the same per-user policy.

Identity for the policy engine: with ``auth = pubkey`` charon reports no
``remote-eap-id``; ``remote-id`` is the certificate subject DN
(``C=JP, O=Example University, CN=alice@123456``). ``core.identity.account_from_dn`` returns the CN,
which is what the engine has to match against the identity grammar in that case.
"""

from __future__ import annotations

from ikemgr.config.schema import Config
from ikemgr.errors import ConfigError, ConfigProblem


def remote_id_pattern(subject: str) -> str:
    """``C=JP, O=X`` → ``C=JP, O=X, CN=*``: charon's DN wildcard match (same RDNs, same order)."""
    return f"{subject}, CN=*"


def cert_auth_context(cfg: Config) -> dict[str, object]:
    """``{"cert_auth": None}`` when disabled, else the values of the second connection."""
    ca = cfg.strongswan_cert_auth
    if not ca.enabled:
        return {"cert_auth": None}
    if ca.connection == cfg.strongswan.connection:
        raise ConfigError([ConfigProblem("strongswan_cert_auth.connection", None,
                                         f"{ca.connection!r} is already the EAP connection's name")])
    assert ca.subject is not None  # the model requires it when enabled
    cacert = ca.cacert if ca.cacert is not None else cfg.gateway.ca
    return {"cert_auth": {
        "conn": ca.connection,
        # swanctl loads CA certificates by file name relative to swanctl/x509ca/
        "cacert": cacert.name,
        "remote_id": remote_id_pattern(ca.subject),
    }}


