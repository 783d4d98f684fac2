"""The lab's certificates, made with strongSwan's ``pki`` (ECDSA P-256, one CA).

One CA stands in for a national CA that certifies several organisations (as NII does
for Japanese universities): it signs the gateway, the RADIUS server and every EAP-TLS
client, including one of *another* organisation that RADIUS must refuse by subject.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ikemgr.errors import ApplyFailed


def _pki(*args: str, stdin: bytes | None = None) -> bytes:
    r = subprocess.run(["pki", *args], input=stdin, capture_output=True, timeout=30, check=False)
    if r.returncode != 0:
        noise = ("TPM 2.0", "plugin 'tpm'")
        err = " | ".join(ln for ln in r.stderr.decode(errors="replace").splitlines()
                         if ln.strip() and not any(n in ln for n in noise))
        raise ApplyFailed(f"pki {args[0]} failed: {err}")
    return r.stdout


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class LabCA:
    """A CA on disk: ``ca.key`` and ``ca.crt`` in ``directory``."""

    def __init__(self, directory: Path, organisation: str) -> None:
        self.dir = directory
        self.organisation = organisation
        self.key = directory / "ca.key"
        self.cert = directory / "ca.crt"

    def create(self) -> None:
        _write(self.key, _pki("--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"), 0o600)
        cert = _pki("--self", "--ca", "--lifetime", "3650", "--in", str(self.key), "--type", "ecdsa",
                    "--dn", f"C=JP, O={self.organisation}, CN={self.organisation} Lab CA",
                    "--outform", "pem")
        _write(self.cert, cert, 0o644)

    def issue(self, name: str, cn: str, sans: list[str], flags: list[str], *,
              organisation: str | None = None, cert_path: Path | None = None,
              key_path: Path | None = None) -> Issued:
        """A key and a certificate for ``cn``; written to the given paths or ``<dir>/<name>.*``."""
        key_path = key_path or self.dir / f"{name}.key"
        cert_path = cert_path or self.dir / f"{name}.crt"
        _write(key_path, _pki("--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"), 0o600)
        req_args = ["--req", "--type", "priv", "--in", str(key_path),
                    "--dn", f"C=JP, O={organisation or self.organisation}, CN={cn}", "--outform", "pem"]
        for san in sans:
            req_args += ["--san", san]
        csr = _pki(*req_args)
        issue_args = ["--issue", "--cacert", str(self.cert), "--cakey", str(self.key), "--type", "pkcs10",
                      "--lifetime", "365", "--outform", "pem"]
        for flag in flags:
            issue_args += ["--flag", flag]
        _write(cert_path, _pki(*issue_args, stdin=csr), 0o644)
        return Issued(cert_path, key_path)
