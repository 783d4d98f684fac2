"""What the clients the service supports send by default (data, with sources).

Each table is written in strongSwan's proposal syntax, in the client's order, so the
same strings serve the linter (``checks/interop.py``) and the namespace tests that
replay a client with a strongSwan initiator (``tests/integration/interop``). The values
are the documented defaults of the built-in clients *without* a configuration profile
that overrides them; a profile (``ikemgr profile``) can set other proposals, which is
what the Windows and Apple profile generators should do.

``rekey_pfs`` says what the client puts into a CREATE_CHILD_SA that rekeys its CHILD_SA:
``"ike-group-and-none"`` = every ESP proposal once with the IKE SA's group and once
without (iOS), ``"none"`` = no KE payload at all (macOS, Windows, the strongSwan app).
That difference is the seed's field failure (§5): a gateway whose ESP proposals require
PFS drops macOS clients at the first CHILD_SA rekey.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RekeyPfs = Literal["ike-group-and-none", "none"]


@dataclass(frozen=True)
class ClientDefaults:
    key: str
    name: str
    ike: tuple[str, ...]
    esp: tuple[str, ...]
    rekey_pfs: RekeyPfs
    #: sends CERTREQ by default; if not, the gateway must send its certificate unasked
    sends_certreq: bool
    source: str


# iOS (as of 16.5), built-in IKEv2 client configured by hand in Settings (no profile).
# Source: https://docs.strongswan.org/docs/latest/interop/ios.html ("Default IKE/ESP
# proposals sent by iOS/macOS", iOS as of 16.5; "only iOS sends a proposal with DH group
# (and a second one without)" when rekeying; the client "does not send a certificate
# request (CERTREQ) unless ServerCertificateIssuerCommonName is configured").
IOS = ClientDefaults(
    key="ios",
    name="iOS built-in IKEv2 client (manual configuration)",
    ike=(
        "aes256-sha256-prfsha256-modp2048",
        "aes256-sha256-prfsha256-ecp256",
        "aes256-sha256-prfsha256-modp1536",
        "aes128-sha1-prfsha1-modp1024",
        "3des-sha1-prfsha1-modp1024",
    ),
    esp=("aes256-sha256", "aes128-sha1", "3des-sha1"),
    rekey_pfs="ike-group-and-none",
    sends_certreq=False,
    source="https://docs.strongswan.org/docs/latest/interop/ios.html",
)

# macOS (as of 13.4), built-in client configured by hand in System Settings (no profile).
# Source: https://docs.strongswan.org/docs/latest/interop/ios.html — the same IKE/ESP
# algorithms as iOS except that "only iOS sends a proposal with ecp256", and "macOS only
# sends one without" DH group when rekeying IPsec SAs (no PFS: the seed's 8-minute drop).
MACOS = ClientDefaults(
    key="macos",
    name="macOS built-in IKEv2 client (manual configuration)",
    ike=(
        "aes256-sha256-prfsha256-modp2048",
        "aes256-sha256-prfsha256-modp1536",
        "aes128-sha1-prfsha1-modp1024",
        "3des-sha1-prfsha1-modp1024",
    ),
    esp=("aes256-sha256", "aes128-sha1", "3des-sha1"),
    rekey_pfs="none",
    sends_certreq=False,
    source="https://docs.strongswan.org/docs/latest/interop/ios.html",
)

# iOS/macOS with a configuration profile (.mobileconfig, what `ikemgr profile` writes) whose
# IKESecurityAssociationParameters / ChildSecurityAssociationParameters leave the algorithms
# at their defaults: one proposal, AES-256 (since iOS 14/macOS 11), SHA2-256 (the PRF is
# inferred from it), DH group 14; EnablePFS defaults to false, so CHILD_SA rekeys carry no
# KE. Sources (under https://developer.apple.com/documentation/networkextension/):
# nevpnikev2securityassociationparameters/encryptionalgorithm (default AES256),
# nevpnikev2securityassociationparameters/integrityalgorithm (default SHA256),
# nevpnikev2securityassociationparameters/diffiehellmangroup (default group14) and
# nevpnprotocolikev2/enablepfs (default false). No CERTREQ unless
# ServerCertificateIssuerCommonName is set (strongSwan docs above).
APPLE_PROFILE = ClientDefaults(
    key="apple-profile",
    name="iOS/macOS with a configuration profile (algorithm defaults)",
    ike=("aes256-sha256-prfsha256-modp2048",),
    esp=("aes256-sha256",),
    rekey_pfs="none",
    sends_certreq=False,
    source="https://developer.apple.com/documentation/networkextension/nevpnikev2securityassociationparameters",
)

# Windows 10/11 built-in (Agile VPN) client, no Set-VpnConnectionIPsecConfiguration and no
# NegotiateDH2048_AES256 registry value. Source:
# https://docs.strongswan.org/docs/6.0/interop/windowsClients.html — "By default Windows 7
# up to Windows 11 propose only the weak modp1024 Diffie-Hellman key exchange algorithm:
# ike = 3des-aes128-aes192-aes256-sha1-sha256-sha384-modp1024"; "Windows 11 proposes the
# AES-GCM ... with the weak modp1024 DH group, too: aes128gcm16-aes256gcm16-sha1-sha256-
# sha384-modp1024" (sha* there are the PRFs); ESP "aes256-aes128-3des-des-null-sha1".
# Windows rekeys the CHILD_SA without PFS unless -PfsGroup is configured.
WINDOWS = ClientDefaults(
    key="windows",
    name="Windows 10/11 built-in IKEv2 client (defaults)",
    ike=(
        "3des-aes128-aes192-aes256-sha1-sha256-sha384-modp1024",
        "aes128gcm16-aes256gcm16-prfsha1-prfsha256-prfsha384-modp1024",
    ),
    esp=("aes256-aes128-3des-des-null-sha1",),
    rekey_pfs="none",
    sends_certreq=True,
    source="https://docs.strongswan.org/docs/6.0/interop/windowsClients.html",
)

# strongSwan VPN Client for Android: without "ike-proposal"/"esp-proposal" in the profile
# the app proposes libcharon's defaults ("default" keyword) and its ESP proposals carry no
# DH group, so CHILD_SA rekeys run without PFS. Source:
# https://docs.strongswan.org/docs/5.9/os/androidVpnClientProfiles.html (keys
# ike-proposal / esp-proposal: "Optional custom ... proposal", defaults otherwise) and
# https://docs.strongswan.org/docs/5.9/config/proposals.html (the default proposals).
ANDROID = ClientDefaults(
    key="android",
    name="strongSwan VPN Client for Android (app defaults)",
    ike=("default",),
    esp=("default",),
    rekey_pfs="none",
    sends_certreq=True,
    source="https://docs.strongswan.org/docs/5.9/os/androidVpnClientProfiles.html",
)

CLIENTS: tuple[ClientDefaults, ...] = (IOS, MACOS, APPLE_PROFILE, WINDOWS, ANDROID)


def by_key(key: str) -> ClientDefaults:
    for c in CLIENTS:
        if c.key == key:
            return c
    raise KeyError(key)
