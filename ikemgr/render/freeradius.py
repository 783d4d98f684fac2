"""FreeRADIUS from the ikemgr config: template contexts and the files to write.

No secret file is read here: the command layer reads the RADIUS client secret and the
LDAP bind password and passes them in as ``RadiusSecrets``. The only input from disk is
the templates (``render.templates``), as for every rendered feature.

Layout: paths are relative to the FreeRADIUS config dir (Debian: /etc/freeradius/3.0).
ikemgr writes only ``policy.d/ikemgr`` and files in ``mods-enabled/`` and ``sites-enabled/``
(which replace the stock symlinks there; the package creates those links only at its first
install, so an upgrade leaves them alone). No conffile is written: the RADIUS client is a
``clients`` section of ikemgr's own (``sites-enabled/ikemgr-clients``) that the listen
sections name, not an entry in Debian's clients.conf. The stock
``mods-available/`` and ``sites-available/`` files stay untouched, so package upgrades
do not collide with rendered files (docs/authentication.md).
"""

from __future__ import annotations

from ikemgr.config.schema import Config
from ikemgr.config.services import SUBJECT_RDN_TYPES
from ikemgr.core.identity import MAX_CHARS
from ikemgr.core.secrets import Secrets
from ikemgr.errors import ConfigError, ConfigProblem, UsageError
from ikemgr.render.templates import Output, render_template

BANNER = "Rendered by ikemgr from its config; edit the ikemgr config and re-render instead."
CLIENTS_SECTION = "ikemgr_clients"
CLIENT_NAME = "ikemgr-gateway"
CHECK_SERVER = "ikemgr-check-eap-tls"
#: group FreeRADIUS runs as on Debian: files holding secrets are 0640 root:freerad
RADIUS_GROUP = "freerad"


#: The FreeRADIUS files need the same secrets as the rest of the render.
RadiusSecrets = Secrets


def unlang_regex(pattern: str, field: str) -> str:
    """A config regex placed between /…/ in unlang: refuse what would change its meaning there.

    ``/`` ends the regex, ``%`` starts an xlat expansion; quotes, whitespace and control
    characters have no place in an identity grammar.
    """
    bad = sorted({c for c in pattern if c in "/%\"'`" or ord(c) < 0x21 or ord(c) == 0x7F})
    if bad:
        raise ConfigError([ConfigProblem(field, None, "cannot be used in FreeRADIUS: contains "
                                         + " ".join(repr(c) for c in bad))])
    return pattern


def _literal(value: str) -> str:
    """An RDN value (schema-restricted to letters, digits, space and . ' & ( ) _ -) as regex text."""
    return "".join(f"[{c}]" if c in ".()" else c for c in value)


def subject_regex(rdns: tuple[tuple[str, str], ...]) -> str:
    """Regex over OpenSSL's one-line subject (``/C=JP/O=Example University/CN=alice``).

    Every configured RDN must appear, in order, as a whole component, and only C/ST/L/O/OU/DC
    components may come before it, so text inside a CN (chosen by the holder) cannot
    satisfy the rule.
    """
    if not rdns:
        raise ValueError("no subject rule")
    other = r"(\/(" + "|".join(SUBJECT_RDN_TYPES) + r")=[^\/]*)*"
    body = "".join(f"{other}\\/{typ}={_literal(val)}" for typ, val in rdns)
    return f"^{body}(\\/|$)"


def contexts(cfg: Config, secrets: RadiusSecrets) -> dict[str, dict[str, object]]:
    """One template context per rendered file (keyed by output path)."""
    ldap, eap, rad = cfg.ldap, cfg.eap, cfg.radius
    if ldap.bind_dn is not None and secrets.ldap_bind_password is None:
        raise UsageError("ldap.bind_dn is set but no bind password was given")
    identity_pattern = unlang_regex(cfg.policy.identity_pattern, "policy.identity_pattern")
    account_pattern = unlang_regex(cfg.policy.account_pattern, "policy.account_pattern")
    filt = ldap.user_filter if ldap.disabled_filter is None else \
        f"(&{ldap.user_filter}(!{ldap.disabled_filter}))"
    base = {"banner": BANNER}
    tls_on = "tls" in eap.methods
    # The inner EAP method FreeRADIUS proposes inside EAP-TTLS. GTC first: it carries the
    # password itself, so an LDAP bind checks it and no NT hash is needed. strongSwan's TTLS
    # peer speaks only EAP inside the tunnel and takes whatever is proposed (an inner
    # MSCHAPv2 fails for accounts without an NT hash); other peers NAK to their own method,
    # and inner PAP/MSCHAPv2 without EAP does not use this at all.
    ttls_inner = next((m for m in ("gtc", "mschapv2", "md5") if m in eap.methods), "gtc")  # schema: one is
    out: dict[str, dict[str, object]] = {
        "sites-enabled/ikemgr-clients": base | {
            "clients_section": CLIENTS_SECTION,
            "client_name": CLIENT_NAME, "client_address": str(rad.client_address),
            "secret": secrets.radius,
            "require_message_authenticator": rad.require_message_authenticator,
        },
        "policy.d/ikemgr": base | {
            "identity_pattern": identity_pattern, "account_pattern": account_pattern,
            "max_chars": MAX_CHARS,
        },
        "mods-enabled/ldap": base | {
            "uri": ldap.uri, "bind_dn": ldap.bind_dn,
            "bind_password": secrets.ldap_bind_password if ldap.bind_dn else None,
            "base_dn": ldap.base_dn, "filter": filt,
            "nt_hash_attribute": ldap.nt_hash_attribute,
            "cleartext_attribute": ldap.cleartext_attribute,
            "start_tls": ldap.start_tls,
            "tls_ca_file": str(ldap.tls_ca_file) if ldap.tls_ca_file else None,
            "tls_require_cert": ldap.tls_require_cert,
        },
        "mods-enabled/eap": base | {
            "methods": list(eap.methods), "default_method": eap.default_method,
            "tls_needed": tls_on or "ttls" in eap.methods,
            "server_cert": str(eap.server_cert), "server_key": str(eap.server_key),
            "ca_file": str(eap.ca_file),
            "tls_min_version": eap.tls_min_version, "tls_max_version": eap.tls_max_version,
            "cn_is_account": tls_on and eap.tls_cn_is_account,
            "subject_rule": eap.tls_allowed_subject or "", "check_server": CHECK_SERVER,
            "ttls_inner": ttls_inner,
            "crl": {"dir": f"${{confdir}}/{CRL_DIR}", "reload": eap.crl_reload_interval}
                   if eap.crl_file is not None else None,
        },
        "sites-enabled/default": base | {
            "listen_address": str(rad.address), "auth_port": rad.auth_port,
            "clients_section": CLIENTS_SECTION,
            "acct_port": rad.acct_port, "accounting": rad.accounting,
        },
        "sites-enabled/inner-tunnel": dict(base),
    }
    if tls_on:
        out[f"sites-enabled/{CHECK_SERVER}"] = base | {
            "check_server": CHECK_SERVER, "subject_rule": eap.tls_allowed_subject,
            "subject_regex": subject_regex(eap.subject_rdns),
        }
    return out


#: FreeRADIUS's ca_path (below its config dir): only the CRL, linked under its issuer's
#: OpenSSL hash (``<hash>.r0``), so a CRL that ``ikemgr pki crl`` replaces is read again
#: after ``eap.crl_reload_interval`` without a restart (the CA stays in ``ca_file``)
CRL_DIR = "ikemgr-crl"


def crl_link(cfg: Config, secrets: RadiusSecrets, prefix: str = "") -> list[Output]:
    """The CRL's link in the ca_path, or nothing without ``eap.crl_file``."""
    if cfg.eap.crl_file is None:
        return []
    if secrets.crl_issuer_hash is None:
        raise UsageError("eap.crl_file is set but its issuer hash was not read")
    return [Output(f"{prefix}{CRL_DIR}/{secrets.crl_issuer_hash}.r0", "", link=str(cfg.eap.crl_file))]


_TEMPLATE = {f"sites-enabled/{CHECK_SERVER}": "freeradius/sites-enabled/check-eap-tls.j2"}
_SECRET = {"sites-enabled/ikemgr-clients", "mods-enabled/ldap"}


def radius_outputs(cfg: Config, secrets: RadiusSecrets, prefix: str = "") -> list[Output]:
    """The FreeRADIUS file set. ``prefix`` places it below a render root (e.g. "freeradius/").

    None with remote RADIUS (``radius.servers``): a FreeRADIUS rendered there would listen
    on an address the gateway does not own; an earlier render's files are removed by the
    manifest (render.files).
    """
    if not cfg.radius.local:
        return []
    outputs = []
    for path, ctx in contexts(cfg, secrets).items():
        template = _TEMPLATE.get(path, f"freeradius/{path}.j2")
        text = render_template(template, **ctx)
        secret = path in _SECRET and (path == "sites-enabled/ikemgr-clients" or cfg.ldap.bind_dn is not None)
        outputs.append(Output(prefix + path, text, mode=0o640 if secret else 0o644, secret=secret,
                              group=RADIUS_GROUP if secret else None))
    return outputs + crl_link(cfg, secrets, prefix)
