"""wpa_supplicant's ``eapol_test`` (Debian: eapoltest) as the independent EAP peer over RADIUS.

It plays the part charon's eap-radius relays in production (RFC 3579: EAP in Access-Request,
Message-Authenticator on every packet) with wpa_supplicant's own EAP methods: GTC,
MSCHAPv2 (the authenticator response is verified by the peer), TLS and TTLS/PAP on its
OpenSSL. Unless ``no_mppe`` (GTC derives no key), eapol_test also compares the MSK it
derived with the MS-MPPE keys of the Access-Accept, so an accept proves both sides agree.

The verdict is read from what the server sent (the last RADIUS code), the exit code and
eapol_test's closing SUCCESS/FAILURE line; its debug output is kept for assertions
(NAKs, handshake, rounds) and failure messages.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

EAPOL_TEST = "eapol_test"
TYPES = {"identity": 1, "gtc": 6, "tls": 13, "ttls": 21, "mschapv2": 26}
_CODE = re.compile(r"^RADIUS message: code=(\d+) \(([\w-]+)\)", re.MULTILINE)
_HEXDUMP = re.compile(r"(hexdump(?:_ascii)?\(len=\d+\)|^\s+Value):.*")  # also RADIUS attribute values
_HEXDUMP_CONT = re.compile(r"^\s+(?:[0-9a-f]{2} )+")  # the second and later lines of a hexdump_ascii


@dataclass(frozen=True)
class EapolResult:
    returncode: int
    output: str

    @property
    def radius_codes(self) -> list[str]:
        """Every RADIUS message eapol_test sent or received, by name, in order."""
        return [m.group(2) for m in _CODE.finditer(self.output)]

    @property
    def rounds(self) -> int:
        """Access-Requests sent: 1 means the server decided on the EAP-Response/Identity."""
        return self.radius_codes.count("Access-Request")

    @property
    def outcome(self) -> str:
        """``accept`` only when the server accepted *and* the peer finished (and keys matched)."""
        last = self.radius_codes[-1] if self.radius_codes else None
        closing = self.output.rstrip().rsplit("\n", 1)[-1]
        if last == "Access-Accept" and self.returncode == 0 and closing == "SUCCESS":
            return "accept"
        if last == "Access-Reject":
            return "reject"
        return f"failed (last RADIUS message {last}, exit {self.returncode}, {closing})"

    @property
    def tls_established(self) -> bool:
        return "OpenSSL: Handshake finished" in self.output

    def naked(self, method: str) -> bool:
        """The server proposed ``method`` first and the peer answered with a NAK."""
        return f"CTRL-EVENT-EAP-PROPOSED-METHOD vendor=0 method={TYPES[method]} -> NAK" in self.output

    def tail(self, lines: int = 60) -> str:
        """The last lines for a failure message, hexdumps cut: they hold passwords and keys."""
        kept = [_HEXDUMP.sub(r"\1: (cut)", ln) for ln in self.output.splitlines()
                if not _HEXDUMP_CONT.match(ln)]
        return "\n".join(kept[-lines:])

    def __repr__(self) -> str:  # what a failed assertion shows
        return f"EapolResult({self.outcome!r}, rounds={self.rounds})\n{self.tail()}"


def _quoted(key: str, value: str) -> str:
    if any(c in value for c in '"\n\r\\'):
        raise ValueError(f"eapol_test network {key}: value cannot be written to its config")
    return f'    {key}="{value}"'


def eapol_test(port: int, secret: str, method: str, network: dict[str, str], *,
               address: str = "127.0.0.1", no_mppe: bool = False, timeout: int = 8) -> EapolResult:
    """One authentication with ``method`` (GTC, MSCHAPV2, TLS, TTLS): ``network`` is the rest
    of wpa_supplicant's network block, every value a quoted string."""
    if shutil.which(EAPOL_TEST) is None:
        pytest.fail("eapol_test is not installed (Debian package eapoltest; scripts/setup.sh)")
    if method not in ("GTC", "MSCHAPV2", "TLS", "TTLS"):
        raise ValueError(f"eapol_test: unknown EAP method {method!r}")
    body = "\n".join(["network={", "    key_mgmt=IEEE8021X", f"    eap={method}",
                      *(_quoted(k, v) for k, v in network.items()), "}", ""])
    with tempfile.TemporaryDirectory(prefix="ikt-eapol-") as d:
        conf = Path(d) / "eapol.conf"
        conf.write_text(body)
        argv = [EAPOL_TEST, "-c", str(conf), "-a", address, "-p", str(port), "-s", secret,
                "-t", str(timeout), *(["-n"] if no_mppe else [])]
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                           timeout=timeout + 10, check=False)
    return EapolResult(r.returncode, r.stdout + r.stderr)


@dataclass(frozen=True)
class EapPeer:
    """eapol_test pointed at one RADIUS server (127.0.0.1 by default) with its shared secret."""

    port: int
    secret: str
    address: str = "127.0.0.1"

    def run(self, method: str, network: dict[str, str], *, no_mppe: bool = False) -> EapolResult:
        return eapol_test(self.port, self.secret, method, network, address=self.address,
                          no_mppe=no_mppe)

    def gtc(self, identity: str, password: str) -> EapolResult:
        """EAP-GTC: the password in the clear inside EAP (the server checks it by an LDAP bind);
        GTC derives no key, so there are no MPPE keys to compare."""
        return self.run("GTC", {"identity": identity, "password": password}, no_mppe=True)

    def mschapv2(self, identity: str, password: str) -> EapolResult:
        return self.run("MSCHAPV2", {"identity": identity, "password": password})

    def ttls_pap(self, identity: str, password: str, ca: Path, server_name: str,
                 inner_identity: str | None = None) -> EapolResult:
        """EAP-TTLS with inner PAP; ``identity`` is the outer one (what charon would report)."""
        return self.run("TTLS", {"anonymous_identity": identity, "identity": inner_identity or identity,
                                 "password": password, "phase2": "auth=PAP", "ca_cert": str(ca),
                                 "domain_match": server_name})

    def tls(self, identity: str, cert: Path, key: Path, ca: Path, server_name: str) -> EapolResult:
        return self.run("TLS", {"identity": identity, "client_cert": str(cert), "private_key": str(key),
                                "ca_cert": str(ca), "domain_match": server_name})
