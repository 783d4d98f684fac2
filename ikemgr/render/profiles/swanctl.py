"""Linux swanctl profile: a directory laid out like ``/etc/swanctl``.

This layout is a contract (``ikemgr client up --profile DIR`` loads a copy of it with
``SWANCTL_DIR=<copy> swanctl --load-all``)::

    DIR/swanctl.conf           one connection, named strongswan.connection; secrets only
                               with --password-file (then 0600)
    DIR/x509ca/ca.pem          the CA that signs the gateway (remote.cacerts)
    DIR/x509/<user>.pem        certificate logins (tls, cert): the user's certificate
    DIR/private/<user>.pem     ... and its key (0600)

The connection: ``vips = 0.0.0.0``; remote ``auth = pubkey``, ``id`` = gateway.fqdn,
``cacerts = ca.pem``; local ``eap-mschapv2`` with ``eap_id`` = the identity (eap), or
``eap-tls`` / ``pubkey`` with the user's certificate; ``remote_ts`` = the campus prefixes
(split) or 0.0.0.0/0 (full); proposals, MOBIKE, fragmentation and UDP encapsulation as
the gateway renders them.

Every string value that comes from input is written double-quoted with ``\\`` and ``"``
escaped (strongswan.conf syntax); control characters are refused.
"""

from __future__ import annotations

from ikemgr.render.profiles.common import ProfileFile, ProfileInput, no_controls

CA_FILE = "ca.pem"


def q(value: str) -> str:
    """A strongswan.conf double-quoted string."""
    no_controls(value, "a swanctl value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _yes(v: bool) -> str:
    return "yes" if v else "no"


def file_name(identity: str) -> str:
    """The certificate/key file name: the identity, which the grammar keeps free of / and .."""
    if "/" in identity or identity.startswith(".") or not identity:
        raise ValueError(f"{identity!r} cannot be a file name")
    return f"{identity}.pem"


def conf_text(inp: ProfileInput) -> str:
    ss = inp.cfg.strongswan
    sp = inp.proposals
    user_file = file_name(inp.identity)
    if inp.auth == "eap":
        local = ["auth = eap-mschapv2", f"eap_id = {q(inp.identity)}"]
    elif inp.auth == "tls":
        # the EAP-TLS server is RADIUS, not the gateway: its certificate must chain to the
        # trusted CA, any name (aaa_id %any, as charon-nm does)
        local = ["auth = eap-tls", f"id = {q(inp.identity)}", f"eap_id = {q(inp.identity)}",
                 f"certs = {q(user_file)}", "aaa_id = %any"]
    else:
        local = ["auth = pubkey", f"id = {q(inp.identity)}", f"certs = {q(user_file)}"]
    ts = ",".join(str(n) for n in inp.remote_ts())
    lines = [
        f"# IKEv2 to {inp.fqdn} for {no_controls(inp.identity, 'a swanctl comment')}: rendered by "
        "`ikemgr profile` from the gateway's",
        "# config; layout: swanctl.conf, x509ca/ca.pem, x509/<user>.pem, private/<user>.pem",
        "connections {",
        f"    {inp.conn} {{",
        "        version = 2",
        f"        remote_addrs = {q(inp.remote)}",
        "        vips = 0.0.0.0",
        f"        proposals = {','.join(sp.ike)}",
        f"        mobike = {_yes(ss.mobike)}",
        f"        fragmentation = {_yes(ss.fragmentation)}",
        f"        encap = {_yes(ss.encap)}",
        f"        rekey_time = {sp.ike_rekey_s}s",
        "        send_certreq = yes",
        # the gateway renders send_certreq = no: a client that waits to be asked never
        # sends its certificate and fails with "no trusted public key found"
        *(["        send_cert = always"] if inp.auth == "cert" else []),
        "        local {",
        *(f"            {x}" for x in local),
        "        }",
        "        remote {",
        "            auth = pubkey",
        f"            id = {q(inp.fqdn)}",
        f"            cacerts = {CA_FILE}",
        "        }",
        "        children {",
        f"            {inp.conn} {{",
        f"                remote_ts = {ts}",
        f"                esp_proposals = {','.join(sp.esp)}",
        f"                rekey_time = {sp.child_rekey_s}s",
        "            }",
        "        }",
        "    }",
        "}",
    ]
    if inp.password is not None and inp.auth == "eap":
        lines += ["secrets {", "    eap-user {", f"        id = {q(inp.identity)}",
                  f"        secret = {q(inp.password)}", "    }", "}"]
    return "\n".join(lines) + "\n"


def build(inp: ProfileInput) -> list[ProfileFile]:
    secret = inp.password is not None and inp.auth == "eap"
    files = [ProfileFile("swanctl.conf", conf_text(inp).encode(), 0o600 if secret else 0o644),
             ProfileFile(f"x509ca/{CA_FILE}", inp.ca_pem)]
    if inp.auth != "eap":
        if inp.credential is None:
            raise ValueError("a certificate login needs the user's PKCS#12 (--cert)")
        name = file_name(inp.identity)
        files += [ProfileFile(f"x509/{name}", inp.credential.cert_pem),
                  ProfileFile(f"private/{name}", inp.credential.key_pem, 0o600)]
    return files
