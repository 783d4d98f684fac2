"""User identities for certificates and profiles: the project's identity grammar, nothing else.

The one place this package uses ``ikemgr.core.identity``. A name that fails the grammar
(quotes, ``$( )``, ``;``, newlines, non-ASCII, 10 kB …) never reaches a certificate, a file
name or a profile: ``IdentityRejected`` (exit 2).
"""

from __future__ import annotations

from ikemgr.config.schema import Config
from ikemgr.core.identity import Identity, IdentityGrammar


def user_identity(cfg: Config, text: object) -> Identity:
    grammar = IdentityGrammar.of(cfg)
    return grammar.parse(text)


def client_subject_rdns(cfg: Config) -> tuple[tuple[str, str], ...]:
    """The RDNs before CN: the FreeRADIUS subject rule when one is configured, else C and O."""
    if cfg.eap.tls_allowed_subject is not None:
        return cfg.eap.subject_rdns
    return (("C", cfg.pki.country), ("O", cfg.pki.organisation))


def client_cn(cfg: Config, ident: Identity) -> str:
    """FreeRADIUS ``check_cert_cn = %{Stripped-User-Name}`` wants the account part only."""
    return ident.account if cfg.eap.tls_cn_is_account else str(ident)
