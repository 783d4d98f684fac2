"""NetworkManager keyfile for network-manager-strongswan (``charon-nm``).

The ``[vpn]`` data keys are the ones ``charon-nm`` reads (NetworkManager-strongswan's
``nm_strongswan_plugin.c``): ``address``, ``certificate`` (CA file), ``method``
(``eap`` | ``cert`` | ``eap-tls``), ``user``, ``usercert``/``userkey``, ``remote-identity``,
``virtual``, ``encap``, ``proposal`` + ``ike``/``esp`` (proposals separated by ``;``,
where ``default`` is not an algorithm), ``remote-ts`` (``;``-separated).

The keyfile points at files by absolute path: the CA (and, for certificate logins, the
user's certificate and key) are written beside it and named in it, so the keyfile and
its files go to the same place on the client (``--out`` should be that place).

Written with ``configparser`` (no interpolation, case kept). GKeyFile gives ``\\`` and a
leading space meaning, and a newline would start a new key: such values are refused.
"""

from __future__ import annotations

import configparser
import io

from ikemgr.render.profiles.common import ProfileFile, ProfileInput, UnsafeValue, no_controls

SERVICE = "org.freedesktop.NetworkManager.strongswan"
METHODS = {"eap": "eap", "tls": "eap-tls", "cert": "cert"}


def _safe(value: str, what: str) -> str:
    no_controls(value, what)
    if "\\" in value or value != value.strip():
        raise UnsafeValue(f"{what}: backslashes and outer spaces are not allowed in a keyfile")
    return value


def build(inp: ProfileInput, stem: str) -> list[ProfileFile]:
    """``stem``: the keyfile's absolute path without suffix (companion files go beside it)."""
    sp = inp.proposals
    ca_path = inp.paths.get("ca", f"{stem}-ca.pem")
    vpn = {
        "address": inp.remote,
        "certificate": ca_path,
        "remote-identity": inp.fqdn,
        "method": METHODS[inp.auth],
        "virtual": "yes",
        "encap": "yes" if inp.cfg.strongswan.encap else "no",
        "ipcomp": "no",
        "proposal": "yes",
        "ike": ";".join(sp.explicit("ike")),
        "esp": ";".join(sp.explicit("esp")),
    }
    files = [ProfileFile(ca_path.rsplit("/", 1)[-1], inp.ca_pem)]
    if inp.auth == "eap":
        vpn |= {"user": inp.identity, "password-flags": "2"}  # 2 = ask, never stored
    else:
        if inp.credential is None:
            raise ValueError("a certificate login needs the user's PKCS#12 (--cert)")
        cert, key = f"{stem}-cert.pem", f"{stem}-key.pem"
        vpn |= {"cert-source": "file", "usercert": cert, "userkey": key, "local-identity": inp.identity}
        if inp.auth == "tls":
            vpn["user"] = inp.identity
        files += [ProfileFile(cert.rsplit("/", 1)[-1], inp.credential.cert_pem),
                  ProfileFile(key.rsplit("/", 1)[-1], inp.credential.key_pem, 0o600)]
    if inp.tunnel == "split":
        vpn["remote-ts"] = ";".join(str(n) for n in inp.remote_ts())
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp["connection"] = {"id": _safe(inp.display_name, "connection id"),
                        "uuid": inp.uuid("nm").lower(), "type": "vpn", "autoconnect": "false"}
    cp["vpn"] = {"service-type": SERVICE, **{k: _safe(v, k) for k, v in vpn.items()}}
    cp["ipv4"] = {"method": "auto"}
    cp["ipv6"] = {"method": "ignore"}
    buf = io.StringIO()
    cp.write(buf, space_around_delimiters=False)
    # NetworkManager ignores a keyfile readable by others
    return [ProfileFile("", buf.getvalue().encode(), 0o600), *files]
