"""Apple ``.mobileconfig`` (macOS, iOS, iPadOS): one IKEv2 VPN payload, the CA, the identity.

Built as a Python dict and serialised with ``plistlib``: no string templating, so any
value is XML-escaped by the library. Keys follow Apple's Device Management reference
(``VPN.IKEv2``, ``IKESecurityAssociationParameters``, ``ChildSecurityAssociationParameters``).

A manually configured Apple client proposes AES-256/SHA2-256/group 14 for IKE and does not
use PFS when it rekeys the CHILD_SA. That is what dropped the seed's users every 8 minutes
once hand-picked proposals required PFS; here the SA parameters are the ones the server
renders (``proposals.pick``), and ``EnablePFS`` follows the server's ESP proposal.
"""

from __future__ import annotations

import plistlib
from typing import Any

from ikemgr.render.profiles.common import ProfileFile, ProfileInput, no_controls
from ikemgr.render.profiles.proposals import pick

ENCRYPTION = {"3des": "3DES", "aes128": "AES-128", "aes256": "AES-256",
              "aes128gcm16": "AES-128-GCM", "aes256gcm16": "AES-256-GCM",
              "aes128gcm": "AES-128-GCM", "aes256gcm": "AES-256-GCM",
              "chacha20poly1305": "ChaCha20Poly1305"}
INTEGRITY = {"sha1": "SHA1-96", "sha256": "SHA2-256", "sha384": "SHA2-384", "sha512": "SHA2-512"}
DH_GROUPS = {"modp768": 1, "modp1024": 2, "modp1536": 5, "modp2048": 14, "modp3072": 15,
             "modp4096": 16, "modp6144": 17, "modp8192": 18, "ecp256": 19, "ecp384": 20,
             "ecp521": 21, "x25519": 31}
#: Apple's LifeTimeInMinutes range
LIFETIME_MIN, LIFETIME_MAX = 10, 1440


def _minutes(seconds: int) -> int:
    if seconds <= 0:
        return LIFETIME_MAX
    return max(LIFETIME_MIN, min(LIFETIME_MAX, seconds // 60))


def sa_parameters(inp: ProfileInput) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """IKE and Child SA dictionaries and EnablePFS, from the server's proposals."""
    sp = inp.proposals
    groups = {k: str(v) for k, v in DH_GROUPS.items()}
    ike = pick(sp.expanded("ike"), encr=ENCRYPTION, integ=INTEGRITY, groups=groups, esp=False)
    esp = pick(sp.expanded("esp"), encr=ENCRYPTION, integ=INTEGRITY, groups=groups, esp=True)
    assert ike.group is not None
    ike_d: dict[str, Any] = {"EncryptionAlgorithm": ike.encr, "IntegrityAlgorithm": ike.integ,
                             "DiffieHellmanGroup": int(ike.group),
                             "LifeTimeInMinutes": _minutes(sp.ike_rekey_s)}
    child: dict[str, Any] = {"EncryptionAlgorithm": esp.encr,
                             "LifeTimeInMinutes": _minutes(sp.child_rekey_s)}
    if esp.integ is not None:
        child["IntegrityAlgorithm"] = esp.integ
    pfs = esp.group is not None
    # the group used for the KE of a CHILD_SA rekey; without PFS Apple ignores it
    child["DiffieHellmanGroup"] = int(esp.group) if esp.group is not None else ike_d["DiffieHellmanGroup"]
    return ike_d, child, pfs


def _payload(inp: ProfileInput, kind: str, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    ident = f"{_reverse(inp.fqdn)}.ikemgr.{kind}"
    return {"PayloadType": kind, "PayloadVersion": 1, "PayloadIdentifier": ident,
            "PayloadUUID": inp.uuid(kind), "PayloadDisplayName": name, **extra}


def _reverse(fqdn: str) -> str:
    return ".".join(reversed(fqdn.split(".")))


def build(inp: ProfileInput) -> list[ProfileFile]:
    # XML 1.0 cannot carry most control characters and normalises CR: refuse them
    no_controls(inp.identity, "a profile value")
    ss = inp.cfg.strongswan
    ike_d, child, pfs = sa_parameters(inp)
    payloads: list[dict[str, Any]] = [
        _payload(inp, "com.apple.security.root", f"{inp.ca_cn}",
                 {"PayloadContent": inp.ca_der, "PayloadCertificateFileName": "ca.der"}),
    ]
    ikev2: dict[str, Any] = {
        "RemoteAddress": inp.remote,
        "RemoteIdentifier": inp.fqdn,
        "LocalIdentifier": inp.identity,
        "ServerCertificateIssuerCommonName": inp.ca_cn,
        "ServerCertificateCommonName": inp.fqdn,
        "DisableMOBIKE": 0 if ss.mobike else 1,
        "DisableRedirect": 0,
        "EnableCertificateRevocationCheck": 0,
        "EnableFallback": False,
        "EnablePFS": pfs,
        "DeadPeerDetectionRate": "Medium",
        "UseConfigurationAttributeInternalIPSubnet": 0,
        "IKESecurityAssociationParameters": ike_d,
        "ChildSecurityAssociationParameters": child,
    }
    if inp.auth == "eap":
        ikev2 |= {"AuthenticationMethod": "None", "ExtendedAuthEnabled": 1, "AuthName": inp.identity}
    else:
        if inp.credential is None:
            raise ValueError("a certificate login needs the user's PKCS#12 (--cert)")
        p12 = _payload(inp, "com.apple.security.pkcs12", f"{inp.identity} certificate",
                       {"PayloadContent": inp.credential.p12,
                        "PayloadCertificateFileName": f"{inp.identity}.p12"})
        payloads.append(p12)
        ikev2 |= {"AuthenticationMethod": "Certificate", "PayloadCertificateUUID": p12["PayloadUUID"],
                  "CertificateType": inp.credential.key_type,
                  # EAP-TLS: the certificate inside EAP (RADIUS checks it); cert: IKEv2 pubkey
                  "ExtendedAuthEnabled": 1 if inp.auth == "tls" else 0}
    vpn = _payload(inp, "com.apple.vpn.managed", inp.display_name,
                   {"UserDefinedName": inp.display_name, "VPNType": "IKEv2", "IKEv2": ikev2})
    payloads.append(vpn)
    top = {"PayloadType": "Configuration", "PayloadVersion": 1,
           "PayloadIdentifier": f"{_reverse(inp.fqdn)}.ikemgr.profile",
           "PayloadUUID": inp.uuid("profile"), "PayloadDisplayName": inp.display_name,
           "PayloadOrganization": inp.organisation,
           "PayloadDescription": f"IKEv2 VPN to {inp.fqdn} for {inp.identity}",
           "PayloadRemovalDisallowed": False, "PayloadContent": payloads}
    return [ProfileFile("", plistlib.dumps(top, fmt=plistlib.FMT_XML, sort_keys=True), 0o600
                        if inp.credential else 0o644)]
