"""The identity grammar: what `account` and `account@NNNNNN` may look like.

Identities come from strongSwan (EAP identity of a live SA), from updown environment
variables and from allow-list sources. They are untrusted text: they are checked for
type, UTF-8, length and control characters *before* any regular expression runs, they
are matched against one pattern compiled once, and they are never used as a pattern,
a shell argument or a path. The seed's updown script grepped the list with the
identity as a regex, so ``.*@123456`` matched every entry; here it is simply refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, NamedTuple

from ikemgr.config.services import DEFAULT_ACCOUNT_PATTERN, DEFAULT_PATTERN
from ikemgr.errors import IdentityRejected

if TYPE_CHECKING:
    from ikemgr.config.schema import Config

#: Upper bound checked before any regex runs (characters after decoding, bytes before).
MAX_CHARS = 128
MAX_BYTES = 512
#: Raised whenever a change to the checks below changes what they accept: a store's grants
#: checked by another revision are then checked again (``IdentityGrammar.fingerprint``).
GRAMMAR_REVISION = 1
#: C0 controls and DEL; one compiled scan instead of a Python loop per character (sync checks 100k)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Identity(NamedTuple):
    """A validated identity. ``vlan`` is the lab VLAN management number, or None.

    A NamedTuple, not a frozen dataclass: a sync parses 100,000s of them, and a frozen
    dataclass costs about a microsecond each just to construct.
    """

    account: str
    vlan: int | None

    def __str__(self) -> str:
        return self.account if self.vlan is None else f"{self.account}@{self.vlan}"


def shown(value: object, limit: int = 80) -> str:
    """A log-safe rendering of untrusted input: escaped, quoted, truncated."""
    if isinstance(value, bytes | bytearray):
        text = repr(bytes(value[: limit + 1]))
    else:
        text = repr(str(value)[: limit + 1])
    if len(text) > limit + 2:
        text = text[:limit] + "…"
    return text


class IdentityGrammar:
    """Compiled once from config; ``parse`` is pure and raises IdentityRejected."""

    def __init__(
        self,
        pattern: str = DEFAULT_PATTERN,
        account_pattern: str = DEFAULT_ACCOUNT_PATTERN,
        max_chars: int = MAX_CHARS,
    ) -> None:
        self.pattern = pattern
        self._vlan_re = re.compile(pattern)
        self._account_re = re.compile(account_pattern)
        self.max_chars = max_chars

    @property
    def fingerprint(self) -> str:
        """What decides acceptance, hashed: the two patterns, the length bound, the checks' revision.

        ``sync`` stores it beside a source's grants; an equal fingerprint means an entry
        equal to a stored grant would be accepted again (``core.grants.validate``'s ``known``).
        """
        parts = (str(GRAMMAR_REVISION), self.pattern, self._account_re.pattern, str(self.max_chars))
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]

    @classmethod
    def of(cls, cfg: Config) -> IdentityGrammar:
        """The grammar the config's ``policy`` section defines (every caller builds it so)."""
        return cls(cfg.policy.identity_pattern, cfg.policy.account_pattern)

    def _text(self, value: object) -> str:
        # the common case first: short printable ASCII text (isprintable on ASCII text is
        # exactly "no C0 control and no DEL"); everything else takes the checks below
        if type(value) is str and value and len(value) <= self.max_chars and value.isascii() \
                and value.isprintable():
            return value
        # the same for a list file's lines, which arrive as bytes: ASCII decodes as itself
        if type(value) is bytes and value and len(value) <= self.max_chars and value.isascii():
            text = value.decode("ascii")
            if text.isprintable():
                return text
        if isinstance(value, bytes | bytearray):
            if len(value) > MAX_BYTES:
                raise IdentityRejected("too long", shown(value))
            try:
                value = bytes(value).decode("utf-8", errors="strict")
            except UnicodeDecodeError:
                raise IdentityRejected("not valid UTF-8", shown(value)) from None
        if not isinstance(value, str):
            raise IdentityRejected(f"not a string ({type(value).__name__})", shown(value))
        if not value:
            raise IdentityRejected("empty", shown(value))
        if len(value) > self.max_chars:
            raise IdentityRejected(f"longer than {self.max_chars} characters", shown(value))
        if _CONTROL.search(value):
            raise IdentityRejected("contains control characters", shown(value))
        return value

    def _account(self, account: str, full: str) -> str:
        if account.startswith((".", "-")) or ".." in account:
            raise IdentityRejected("account has a leading dot/dash or '..'", shown(full))
        return account

    def parse(self, value: object) -> Identity:
        """Accept ``account`` or ``account@NNNNNN``; anything else raises IdentityRejected."""
        text = self._text(value)
        if "@" not in text:
            if not self._account_re.fullmatch(text):
                raise IdentityRejected("account does not match the account grammar", shown(text))
            return Identity(self._account(text, text), None)
        return self.parse_vlan_identity(text)

    def parse_vlan_identity(self, value: object) -> Identity:
        """Accept only ``account@NNNNNN`` (allow-list entries must name a VLAN)."""
        return Identity(*self.vlan_pair(value))

    def vlan_pair(self, value: object) -> tuple[str, int]:
        """``parse_vlan_identity`` as a plain ``(account, vlan)`` tuple: what a sync checks
        100,000 entries with (the same checks, without an Identity per entry)."""
        # the common case inline (a sync calls this 100,000 times): short printable ASCII
        # text, the grammar's match, decimal digits without a leading zero, a plain account.
        # Every test below is also made by the full path, which gives the reason on refusal.
        if type(value) is str and value and len(value) <= self.max_chars and value.isascii() \
                and value.isprintable() and value.count("@") == 1 and self._vlan_re.fullmatch(value):
            account, _, number = value.partition("@")
            if account and number.isdigit() and number[0] != "0" and account[0] not in ".-" \
                    and ".." not in account:
                return account, int(number)
        return self._vlan_pair(value)

    def _vlan_pair(self, value: object) -> tuple[str, int]:
        text = self._text(value)
        if text.count("@") != 1:
            raise IdentityRejected("must contain exactly one '@'", shown(text))
        if not self._vlan_re.fullmatch(text):
            raise IdentityRejected("does not match the identity grammar", shown(text))
        account, _, number = text.partition("@")
        if not (number.isascii() and number.isdigit()):
            raise IdentityRejected("VLAN number is not decimal digits", shown(text))
        if len(number) > 1 and number.startswith("0"):
            raise IdentityRejected("VLAN number has leading zeros", shown(text))
        if not account:
            raise IdentityRejected("empty account", shown(text))
        vlan = int(number)
        if vlan < 1:
            raise IdentityRejected("VLAN number must be at least 1", shown(text))
        return self._account(account, text), vlan


def account_from_dn(dn: object) -> str | None:
    """The account of a certificate client: the CN of its subject DN as charon reports it.

    charon gives a public-key client's identity as its subject (``C=JP, O=Example
    University, CN=alice@123456``) and no EAP identity. Only a single CN that is the last
    RDN counts (a DN with two CNs, or a CN in the middle, is no account); the value still
    goes through the grammar like any identity. Anything that is not text is None.
    """
    if isinstance(dn, bytes | bytearray):
        try:
            dn = bytes(dn).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(dn, str) or len(dn) > 1024:
        return None
    parts = [p.strip() for p in dn.split(",")]
    cns = [p for p in parts if p[:3].upper() == "CN="]
    if len(cns) != 1 or parts[-1] is not cns[0]:
        return None
    return cns[0][3:] or None
