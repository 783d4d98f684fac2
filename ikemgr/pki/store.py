"""The PKI directory: the CA, what it issued and revoked, and every file written from it.

Layout (``pki.dir`` or ``--dir``)::

    ca.crt                CA certificate (0644)        ca.key   CA key (0600)
    index.json            every issued serial: name, kind, subject, notAfter, revocation
    certs/<name>.crt      issued certificates (0644)   private/<name>.key  their keys (0600)
    p12/<name>.p12        modern PKCS#12 (0600)        p12/<name>-legacy.p12  macOS/iOS (0600)
    crl.pem, crl.der      the CRL (charon x509crl/ takes either, FreeRADIUS the PEM)

With ``--ca-cert/--ca-key`` an operator's CA signs instead of ``ca.*``; the index, the
issued files and the CRL still live in the directory. Every file is written atomically
(temp file + rename, mode set before the data lands) so a crash never leaves half a key,
and keys are never printed.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikemgr.config.pki import Pki
from ikemgr.errors import ApplyFailed, Refused, UsageError
from ikemgr.pki import certs, crl, pkcs12
from ikemgr.pki.fs import write as atomic_write

KEY_MODE = 0o600
CERT_MODE = 0o644


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def key_pem(key: certs.PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issued:
    name: str
    serial: int
    subject: str
    cert: Path
    key: Path
    p12: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "serial": f"{self.serial:x}", "subject": self.subject,
                "cert": str(self.cert), "key": str(self.key), "p12": [str(p) for p in self.p12]}


class PkiStore:
    def __init__(self, directory: Path, settings: Pki, ca_cert: Path | None = None,
                 ca_key: Path | None = None, ca_key_password: bytes | None = None) -> None:
        if (ca_cert is None) != (ca_key is None):
            raise UsageError("--ca-cert and --ca-key go together")
        self.dir = directory
        self.settings = settings
        self.external = ca_cert is not None
        self.ca_cert_path = ca_cert or directory / "ca.crt"
        self.ca_key_path = ca_key or directory / "ca.key"
        self._ca_key_password = ca_key_password
        self.index_path = directory / "index.json"
        self.crl_pem = directory / "crl.pem"
        self.crl_der = directory / "crl.der"

    # ------------------------------------------------------------------ files
    def cert_path(self, name: str) -> Path:
        return self.dir / "certs" / f"{name}.crt"

    def key_path(self, name: str) -> Path:
        return self.dir / "private" / f"{name}.key"

    def p12_path(self, name: str, encoding: pkcs12.Encoding) -> Path:
        return self.dir / "p12" / (f"{name}-legacy.p12" if encoding == "legacy" else f"{name}.p12")

    def _write_key(self, path: Path, data: bytes) -> None:
        atomic_write(path, data, KEY_MODE)

    # ------------------------------------------------------------------ index
    def _index(self) -> dict[str, Any]:
        try:
            data = json.loads(self.index_path.read_text())
        except FileNotFoundError:
            return {"version": 1, "crl_number": 0, "certs": []}
        except (OSError, ValueError) as e:
            raise ApplyFailed(f"{self.index_path}: unreadable ({e})") from None
        if not isinstance(data, dict) or not isinstance(data.get("certs"), list):
            raise ApplyFailed(f"{self.index_path}: not an ikemgr PKI index")
        return data

    def _save_index(self, data: dict[str, Any]) -> None:
        atomic_write(self.index_path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(),
                     CERT_MODE)

    def entries(self) -> list[dict[str, Any]]:
        return list(self._index()["certs"])

    # ------------------------------------------------------------------ CA
    def init(self) -> x509.Certificate:
        if self.external:
            raise UsageError("pki init creates ikemgr's own CA; with --ca-cert/--ca-key there is "
                             "nothing to create")
        if self.ca_key_path.exists() or self.ca_cert_path.exists():
            raise Refused(f"{self.dir}: a CA exists already (ca.crt/ca.key); refusing to replace it")
        s = self.settings
        key = certs.new_key(s.key_type)
        cert = certs.build_ca(key, [("C", s.country), ("O", s.organisation),
                                    ("CN", f"{s.organisation} IKEv2 CA")],
                              _now(), s.ca_days, x509.random_serial_number())
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_key(self.ca_key_path, key_pem(key))
        atomic_write(self.ca_cert_path, cert_pem(cert), CERT_MODE)
        if not self.index_path.exists():
            self._save_index({"version": 1, "crl_number": 0, "certs": []})
        return cert

    def issuer(self) -> certs.Issuer:
        try:
            cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(),
                                                     password=self._ca_key_password)
        except FileNotFoundError as e:
            raise UsageError(f"no CA at {e.filename} (run `ikemgr pki init` or give "
                             "--ca-cert/--ca-key)") from None
        except (ValueError, TypeError) as e:
            raise UsageError(f"the CA certificate or key cannot be loaded: {e}") from None
        if not isinstance(key, certs.PrivateKey):
            raise UsageError("the CA key must be ECDSA or RSA")
        if not certs.is_ca(cert):
            raise UsageError(f"{self.ca_cert_path} is not a CA certificate (basicConstraints CA:FALSE)")
        if not certs.key_matches(cert, key):
            raise UsageError(f"{self.ca_key_path} is not the key of {self.ca_cert_path}")
        return certs.Issuer(cert, key)

    # ------------------------------------------------------------------ issue
    def _record(self, name: str, kind: str, cert: x509.Certificate) -> None:
        data = self._index()
        data["certs"].append({
            "serial": f"{cert.serial_number:x}", "name": name, "kind": kind,
            "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(), "revoked_at": None, "reason": None,
        })
        self._save_index(data)

    def _refuse_existing(self, name: str, force: bool) -> None:
        if not force and (self.cert_path(name).exists() or self.key_path(name).exists()):
            raise Refused(f"{self.cert_path(name)} exists; --force issues a new one (the old serial "
                          "stays valid until revoked)")

    def issue_server(self, fqdn: str, ips: list[IPv4Address | IPv6Address], force: bool = False) -> Issued:
        issuer = self.issuer()
        self._refuse_existing(fqdn, force)
        s = self.settings
        key = certs.new_key(s.key_type)
        rdns = [("C", s.country), ("O", s.organisation)]
        cert = certs.build_server(issuer, key, rdns, fqdn, ips, _now(), s.server_days,
                                  x509.random_serial_number())
        self._write_key(self.key_path(fqdn), key_pem(key))
        atomic_write(self.cert_path(fqdn), cert_pem(cert), CERT_MODE)
        self._record(fqdn, "server", cert)
        return Issued(fqdn, cert.serial_number, cert.subject.rfc4514_string(),
                      self.cert_path(fqdn), self.key_path(fqdn))

    def issue_client(self, identity: str, cn: str, rdns: tuple[tuple[str, str], ...],
                     p12_password: bytes | None, encodings: tuple[pkcs12.Encoding, ...],
                     force: bool = False) -> Issued:
        issuer = self.issuer()
        self._refuse_existing(identity, force)
        if encodings and not p12_password:
            raise UsageError("PKCS#12 export needs a password (--p12-password-file)")
        key = certs.new_key(self.settings.key_type)
        cert = certs.build_client(issuer, key, rdns, cn, identity, _now(), self.settings.client_days,
                                  x509.random_serial_number())
        self._write_key(self.key_path(identity), key_pem(key))
        atomic_write(self.cert_path(identity), cert_pem(cert), CERT_MODE)
        bundles = []
        for enc in encodings:
            assert p12_password is not None
            path = self.p12_path(identity, enc)
            self._write_key(path, pkcs12.export(key, cert, issuer.cert, identity, p12_password, enc))
            bundles.append(path)
        self._record(identity, "client", cert)
        return Issued(identity, cert.serial_number, cert.subject.rfc4514_string(),
                      self.cert_path(identity), self.key_path(identity), tuple(bundles))

    # ------------------------------------------------------------------ revoke / CRL
    def revoke(self, *, serial: str | None = None, name: str | None = None,
               reason: str = "unspecified") -> list[str]:
        if (serial is None) == (name is None):
            raise UsageError("give exactly one of --serial or --name")
        if reason not in crl.REASONS:
            raise UsageError(f"reason must be one of {', '.join(crl.REASONS)}")
        want = None
        if serial is not None:
            text = serial.lower().removeprefix("0x").replace(":", "")
            try:
                want = f"{int(text, 16):x}"
            except ValueError:
                raise UsageError(f"--serial: {serial[:40]!r} is not a hexadecimal serial") from None
        data = self._index()
        hits = [e for e in data["certs"] if (e["serial"] == want if want else e["name"] == name)
                and e["revoked_at"] is None]
        if not hits:
            what = f"serial {want}" if want else f"name {str(name)[:60]!r}"
            raise UsageError(f"no unrevoked certificate with {what} in {self.index_path}")
        at = _now().isoformat()
        for e in hits:
            e["revoked_at"], e["reason"] = at, reason
        self._save_index(data)
        return [e["serial"] for e in hits]

    def write_crl(self) -> tuple[int, list[str]]:
        issuer = self.issuer()
        data = self._index()
        revoked = [crl.Revoked(int(e["serial"], 16), dt.datetime.fromisoformat(e["revoked_at"]),
                               e["reason"] or "unspecified")
                   for e in data["certs"] if e["revoked_at"] is not None]
        number = int(data.get("crl_number", 0)) + 1
        c = crl.build_crl(issuer, revoked, number, _now(), self.settings.crl_days)
        atomic_write(self.crl_pem, c.public_bytes(serialization.Encoding.PEM), CERT_MODE)
        atomic_write(self.crl_der, c.public_bytes(serialization.Encoding.DER), CERT_MODE)
        data["crl_number"] = number
        self._save_index(data)
        return number, [f"{r.serial:x}" for r in revoked]


def password_from_file(path: Path, create: bool) -> bytes:
    """A PKCS#12 password from a file (first line); ``create`` writes a random one (0600)."""
    try:
        text = path.read_bytes().split(b"\n", 1)[0].strip()
    except FileNotFoundError:
        if not create:
            raise UsageError(f"{path}: no such password file") from None
        text = secrets.token_urlsafe(18).encode()
        atomic_write(path, text + b"\n", KEY_MODE)
        return text
    except OSError as e:
        raise UsageError(f"{path}: unreadable ({e.strerror})") from None
    if not text:
        raise UsageError(f"{path}: empty password file")
    return text
