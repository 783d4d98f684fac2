"""The server's IKE/ESP proposals, parsed once, as every client profile needs them.

The gateway renders ``strongswan.proposals`` / ``strongswan.esp_proposals`` verbatim into
swanctl.conf (``ikemgr/render/strongswan.py`` ``swanctl_context``: ``",".join(ss.proposals)``).
Profiles must offer exactly what that server accepts, so they read the same two config
lists through :func:`server_proposals` — the one function every profile shares (the server
side should call it too; see docs/clients.md).

strongSwan clients (swanctl, Android, NetworkManager) take the proposals as strings.
Apple and Windows can express only one algorithm of each kind per SA, so
:func:`pick` chooses, in the server's order of preference, the first proposal whose
algorithms the platform has names for, and maps them. PFS follows the ESP proposal:
groups without ``modpnone`` mean the server *requires* a KE on CHILD_SA rekey (Apple and
Windows must then enable PFS with one of those groups, or be dropped at the first rekey —
the seed's 8-minute disconnects); groups with ``modpnone`` make it optional (the profile
enables it with the server's first group); no groups means the server refuses a KE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ikemgr.config.schema import Config

# The "default" keyword, expanded so a platform mapping can pick from it like from any
# other proposal: what charon 5.9.8 on Debian 12 (openssl plugin loaded) logs as its
# configured default proposals, in its order. CTR, Camellia, CCM, truncated GCM and the
# brainpool groups are left out: no client platform ikemgr writes for names them.
DEFAULT_IKE = ("aes128-aes192-aes256-3des-sha256-sha384-sha512-sha1-prfsha256-prfsha384-"
               "prfsha512-prfsha1-x25519-x448-ecp256-ecp384-ecp521-modp3072-modp4096-modp6144-"
               "modp8192-modp2048",
               "aes128gcm16-aes192gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-"
               "prfsha512-prfsha1-x25519-x448-ecp256-ecp384-ecp521-modp3072-modp4096-modp6144-"
               "modp8192-modp2048")
DEFAULT_ESP = ("aes128-aes192-aes256-sha256-sha384-sha512-sha1",
               "aes128gcm16-aes192gcm16-aes256gcm16")

AEAD = {"aes128gcm16", "aes192gcm16", "aes256gcm16", "aes128gcm", "aes192gcm", "aes256gcm",
        "chacha20poly1305"}
ENCR = AEAD | {"aes128", "aes192", "aes256", "3des", "aes128ctr", "aes256ctr", "camellia128",
               "camellia256"}
INTEG = {"sha1", "sha256", "sha384", "sha512", "md5", "aesxcbc", "sha256_96"}
GROUPS = {"modp768", "modp1024", "modp1536", "modp2048", "modp3072", "modp4096", "modp6144",
          "modp8192", "ecp192", "ecp224", "ecp256", "ecp384", "ecp521", "x25519", "curve25519",
          "x448", "curve448", "modp1024s160", "modp2048s224", "modp2048s256", "ecp224bp",
          "ecp256bp", "ecp384bp", "ecp512bp"}


@dataclass(frozen=True)
class Proposal:
    """One strongSwan proposal split by transform type, each in its written order."""

    text: str
    encr: tuple[str, ...]
    integ: tuple[str, ...]
    prf: tuple[str, ...]
    groups: tuple[str, ...]
    no_pfs: bool  # "modpnone"/"none" present: a KE is optional on rekey

    @property
    def aead(self) -> bool:
        return bool(self.encr) and all(e in AEAD for e in self.encr)


def parse(text: str) -> Proposal:
    encr: list[str] = []
    integ: list[str] = []
    prf: list[str] = []
    groups: list[str] = []
    no_pfs = False
    for tok in text.split("-"):
        if tok in ENCR:
            encr.append(tok)
        elif tok in INTEG:
            integ.append(tok)
        elif tok.startswith("prf") and tok[3:] in INTEG:
            prf.append(tok[3:])
        elif tok in ("modpnone", "none"):
            no_pfs = True
        elif tok in GROUPS:
            groups.append({"curve25519": "x25519", "curve448": "x448"}.get(tok, tok))
        elif tok in ("noesn", "esn"):
            continue
        else:
            raise ValueError(f"{text}: {tok!r} is not an algorithm ikemgr knows")
    return Proposal(text, tuple(encr), tuple(integ), tuple(prf), tuple(groups), no_pfs)


@dataclass(frozen=True)
class ServerProposals:
    """What the gateway renders: proposal strings as written, plus the lifetimes."""

    ike: tuple[str, ...]
    esp: tuple[str, ...]
    ike_rekey_s: int  # 0 = no IKE rekey (strongswan.rekey_time)
    child_rekey_s: int  # charon's CHILD_SA default; the rendered swanctl.conf sets none

    def expanded(self, which: str) -> list[Proposal]:
        texts = self.ike if which == "ike" else self.esp
        default = DEFAULT_IKE if which == "ike" else DEFAULT_ESP
        out: list[Proposal] = []
        for t in texts:
            out += [parse(d) for d in default] if t == "default" else [parse(t)]
        return out

    def explicit(self, which: str) -> tuple[str, ...]:
        """The proposals without the ``default`` keyword (NetworkManager and the Android
        app parse each proposal on its own, where ``default`` is not an algorithm)."""
        return tuple(t for t in (self.ike if which == "ike" else self.esp) if t != "default")


#: charon's CHILD_SA rekey_time default (swanctl.conf: 1h)
CHILD_REKEY_DEFAULT_S = 3600


def server_proposals(cfg: Config) -> ServerProposals:
    ss = cfg.strongswan
    return ServerProposals(tuple(ss.proposals), tuple(ss.esp_proposals), ss.rekey_time,
                           CHILD_REKEY_DEFAULT_S)


class Unexpressible(ValueError):
    """No server proposal maps onto what a platform can say."""


@dataclass(frozen=True)
class Picked:
    """One proposal in a platform's own words (values of the given maps)."""

    source: str  # the server proposal it came from
    encr: str
    integ: str | None  # None for AEAD ESP
    group: str | None  # IKE DH group, or the PFS group for ESP (None = no PFS)
    aead: bool


def pick(props: Sequence[Proposal], *, encr: Mapping[str, str], integ: Mapping[str, str],
         groups: Mapping[str, str], esp: bool, allow_aead: bool = True,
         prefer: Callable[[Proposal], int] | None = None) -> Picked:
    """The first server proposal (in server order, or by ``prefer``) the platform can express."""
    order = sorted(props, key=prefer) if prefer else list(props)
    for p in order:
        if p.aead and not allow_aead:
            continue
        e = next((encr[x] for x in p.encr if x in encr), None)
        if e is None:
            continue
        if p.aead:
            # an AEAD IKE SA still needs a PRF; the platforms name it as the integrity algorithm
            i = next((integ[x] for x in (p.prf or ("sha256",)) if x in integ), None) if not esp else None
            if not esp and i is None:
                continue
        else:
            i = next((integ[x] for x in p.integ if x in integ), None)
            if i is None:
                continue
        if esp:
            g = next((groups[x] for x in p.groups if x in groups), None)
            if p.groups and g is None and not p.no_pfs:
                continue  # PFS required with groups this platform lacks
        else:
            g = next((groups[x] for x in p.groups if x in groups), None)
            if g is None:
                continue
        return Picked(p.text, e, i, g, p.aead)
    raise Unexpressible("none of " + ", ".join(p.text for p in props))
