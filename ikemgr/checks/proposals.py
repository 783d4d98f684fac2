"""strongSwan proposal strings → algorithm sets, and the responder's selection (pure).

The interop linter has to answer "does this client's default proposal set meet the
gateway's configured one, and at which exchange does it fail?" without a daemon. This
module models just enough of charon's proposal handling (strongSwan 5.9, as packaged by
Debian 12) to answer that:

* a proposal is a set of algorithms per transform type (encryption, integrity, PRF,
  key exchange); ``default`` expands to charon's built-in default proposals;
* two proposals match when every transform type has an algorithm in common (an AEAD
  proposal has no integrity transform; a non-AEAD IKE proposal without ``prf…`` gets the
  PRFs that correspond to its integrity algorithms, as charon does);
* charon as responder walks *its own* proposals in order and takes the first one that
  matches any of the client's (``prefer_configured_proposals = yes``, the default), and
  inside it the first key exchange group, in its own order, that the client offers;
* the CHILD_SA created inside IKE_AUTH never negotiates a key exchange (its keys come
  from the IKE SA), so key exchange groups are ignored there; a CHILD_SA rekey does: a
  gateway proposal that lists groups but not ``none``/``modpnone`` *requires* PFS, and a
  client that rekeys without KE payload gets NO_PROPOSAL_CHOSEN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NONE = "none"

_ENCR_AEAD = re.compile(r"^(aes(128|192|256)?(gcm|ccm)(8|12|16|64|96|128)?|chacha20poly1305)$")
_ENCR = re.compile(r"^(aes(128|192|256)?|3des|des|null|blowfish\d*|cast128|camellia(128|192|256)?"
                   r"(ctr)?|aes(128|192|256)?ctr)$")
_INTEG = re.compile(r"^(md5(_128)?|sha1(_160)?|sha|sha2?_?(256|384|512)(_96)?|sha(256|384|512)|"
                    r"aesxcbc|aescmac|aes(128|192|256)gmac)$")
_PRF = re.compile(r"^prf(md5|sha1|sha256|sha384|sha512|aesxcbc|aescmac)$")
_DH = re.compile(r"^(modp(768|1024|1536|2048|3072|4096|6144|8192|1024s160|2048s224|2048s256)|"
                 r"ecp(192|224|256|384|521)|ecp(224|256|384|512)bp|curve25519|x25519|curve448|x448|"
                 r"modpnone|none)$")
_ESN = frozenset({"esn", "noesn"})

#: keyword aliases → one canonical name, so "aes" == "aes128", "sha" == "sha1" …
_ALIAS = {
    "aes": "aes128", "sha": "sha1", "sha1_160": "sha1", "md5_128": "md5",
    "sha2_256": "sha256", "sha2_384": "sha384", "sha2_512": "sha512",
    "curve25519": "x25519", "curve448": "x448", "modpnone": NONE,
    "aesgcm16": "aes128gcm16", "aes128gcm": "aes128gcm16", "aes192gcm": "aes192gcm16",
    "aes256gcm": "aes256gcm16",
}
_INTEG_TO_PRF = {"md5": "prfmd5", "sha1": "prfsha1", "sha256": "prfsha256", "sha384": "prfsha384",
                 "sha512": "prfsha512", "aesxcbc": "prfaesxcbc", "aescmac": "prfaescmac"}

# charon 5.9.8's ``default`` keyword as Debian 12's charon expands it with the plugin list
# the gateway loads (openssl, curve25519, aes, gcm, sha1, sha2 …): copied from the
# "configured proposals" lines of a real gateway charon (tests/integration/interop), in
# charon's order. Documented at https://docs.strongswan.org/docs/5.9/config/proposals.html;
# the lab also measured that it accepts libreswan's MODP_2048 and openiked's
# AES_CBC_128/SHA2_384 (../shared/notes/ike-peers.md, Q4). It has no MODP_1024.
_DEFAULT_DH = ("x25519-x448-ecp256-ecp384-ecp521-ecp256bp-ecp384bp-ecp512bp-"
               "modp3072-modp4096-modp6144-modp8192-modp2048")
_DEFAULT_PRF = "prfsha256-prfsha384-prfsha512-prfsha1"
DEFAULT_IKE = (
    "aes128-aes192-aes256-aes128ctr-aes192ctr-aes256ctr-camellia128-camellia192-camellia256-"
    f"camellia128ctr-camellia192ctr-camellia256ctr-3des-sha256-sha384-sha512-sha1-{_DEFAULT_PRF}-"
    f"{_DEFAULT_DH}",
    "aes128gcm16-aes192gcm16-aes256gcm16-aes128ccm16-aes192ccm16-aes256ccm16-chacha20poly1305-"
    "aes128gcm12-aes192gcm12-aes256gcm12-aes128gcm8-aes192gcm8-aes256gcm8-aes128ccm12-aes192ccm12-"
    f"aes256ccm12-aes128ccm8-aes192ccm8-aes256ccm8-{_DEFAULT_PRF}-{_DEFAULT_DH}",
)
DEFAULT_ESP = (
    "aes128-aes192-aes256-sha256-sha384-sha512-sha1-aesxcbc",
    "aes128gcm16-aes192gcm16-aes256gcm16",
)


class ProposalError(ValueError):
    """A keyword this model does not know (the config validator lets through any a-z0-9)."""


@dataclass(frozen=True)
class Proposal:
    """One proposal; each field keeps the configured order (charon prefers the first)."""

    text: str
    encr: tuple[str, ...]
    integ: tuple[str, ...]
    prf: tuple[str, ...]
    dh: tuple[str, ...]

    @property
    def aead(self) -> bool:
        return bool(self.encr) and all(_ENCR_AEAD.fullmatch(e) for e in self.encr)

    @property
    def groups(self) -> tuple[str, ...]:
        """Key exchange groups, without the ``none`` marker."""
        return tuple(g for g in self.dh if g != NONE)

    @property
    def pfs_optional(self) -> bool:
        """True when a peer that sends no KE payload is accepted (no groups, or ``none``)."""
        return not self.groups or NONE in self.dh


def _canon(word: str) -> str:
    return _ALIAS.get(word, word)


def parse_one(text: str, ike: bool) -> Proposal:
    """One dash-separated proposal (no ``default``)."""
    encr: list[str] = []
    integ: list[str] = []
    prf: list[str] = []
    dh: list[str] = []
    for raw in text.split("-"):
        word = _canon(raw)
        if word in _ESN:
            continue
        if _ENCR_AEAD.fullmatch(word) or _ENCR.fullmatch(word):
            encr.append(word)
        elif _PRF.fullmatch(word):
            prf.append(word)
        elif _INTEG.fullmatch(word):
            integ.append(word)
        elif _DH.fullmatch(word):
            dh.append(word)
        else:
            raise ProposalError(f"{text!r}: unknown algorithm keyword {raw!r}")
    if not encr:
        raise ProposalError(f"{text!r}: no encryption algorithm")
    aead = all(_ENCR_AEAD.fullmatch(e) for e in encr)
    if any(_ENCR_AEAD.fullmatch(e) for e in encr) and not aead:
        raise ProposalError(f"{text!r}: AEAD and classic ciphers cannot share a proposal")
    if not aead and not integ:
        raise ProposalError(f"{text!r}: a non-AEAD proposal needs an integrity algorithm")
    if ike and not prf:
        if aead:
            raise ProposalError(f"{text!r}: an AEAD IKE proposal needs a prf… keyword")
        prf = [_INTEG_TO_PRF[i] for i in integ if i in _INTEG_TO_PRF]
    if ike and not dh:
        raise ProposalError(f"{text!r}: an IKE proposal needs a key exchange group")
    if not ike:
        prf = []
    return Proposal(text, tuple(encr), tuple(integ), tuple(prf), tuple(dh))


def parse_list(items: list[str] | tuple[str, ...], ike: bool) -> tuple[Proposal, ...]:
    """A configured list, ``default`` expanded where it appears (as charon does)."""
    out: list[Proposal] = []
    for item in items:
        if item == "default":
            out += [parse_one(t, ike) for t in (DEFAULT_IKE if ike else DEFAULT_ESP)]
        else:
            out.append(parse_one(item, ike))
    return tuple(out)


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """The first of ``a`` (the responder's order) that is also in ``b``."""
    for x in a:
        if x in b:
            return x
    return None


@dataclass(frozen=True)
class Selected:
    """What charon picks: its proposal, the client's, and the algorithms in common."""

    ours: Proposal
    theirs: Proposal
    encr: str
    integ: str | None
    prf: str | None
    dh: str | None

    def describe(self) -> str:
        parts = [self.encr, self.integ, self.prf, self.dh]
        return "/".join(p for p in parts if p)


def match(ours: Proposal, theirs: Proposal, *, kind: str) -> Selected | None:
    """``kind``: "ike" (IKE_SA_INIT, IKE rekey), "esp-auth" (IKE_AUTH child), "esp-rekey"."""
    encr = _common(ours.encr, theirs.encr)
    if encr is None:
        return None
    integ = None
    if ours.aead != theirs.aead:
        return None
    if not ours.aead:
        integ = _common(ours.integ, theirs.integ)
        if integ is None:
            return None
    prf = None
    if kind == "ike":
        prf = _common(ours.prf, theirs.prf)
        if prf is None:
            return None
    dh: str | None = None
    if kind == "ike":
        dh = _common(ours.groups, theirs.groups)
        if dh is None:
            return None
    elif kind == "esp-rekey":
        mine = ours.dh or (NONE,)
        peer = theirs.dh or (NONE,)
        dh = _common(mine, peer)
        if dh is None:
            return None
        dh = None if dh == NONE else dh
    return Selected(ours, theirs, encr, integ, prf, dh)


def select(ours: tuple[Proposal, ...], theirs: tuple[Proposal, ...], *, kind: str) -> Selected | None:
    """charon as responder with prefer_configured_proposals = yes: its order wins."""
    for o in ours:
        for t in theirs:
            s = match(o, t, kind=kind)
            if s is not None:
                return s
    return None


def with_group(p: Proposal, group: str | None, keep_none: bool) -> Proposal:
    """``p`` as a client sends it when rekeying a CHILD_SA with PFS in ``group``."""
    dh: tuple[str, ...] = () if group is None else (group,)
    if keep_none and group is not None:
        dh += (NONE,)
    suffix = "" if group is None else f"-{group}"
    return Proposal(p.text + suffix, p.encr, p.integ, p.prf, dh)
