"""`ikemgr profile`: a client profile for one user, from the same config as the server.

Thin: validate the user against the identity grammar, read the CA and (for certificate
logins) the user's PKCS#12, call ``ikemgr.render.profiles.build``, write the files
atomically. Passwords are read from files and never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config
from ikemgr.commands._common import run as run_command
from ikemgr.config.schema import Config
from ikemgr.errors import UsageError
from ikemgr.pki import pkcs12
from ikemgr.pki.fs import write
from ikemgr.pki.names import user_identity
from ikemgr.pki.store import cert_pem, key_pem, password_from_file
from ikemgr.render.profiles import FORMATS, Format, build
from ikemgr.render.profiles.common import (
    Auth,
    Credential,
    ProfileInput,
    Tunnel,
    UnsafeValue,
    default_tunnel,
)
from ikemgr.render.profiles.proposals import Unexpressible
from ikemgr.result import Result


def _key_type(cert: x509.Certificate) -> str:
    pub = cert.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return {256: "ECDSA256", 384: "ECDSA384", 521: "ECDSA521"}.get(pub.curve.key_size, "ECDSA256")
    return "RSA"


def _identities(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.RFC822Name)} | \
        {str(v) for v in san.get_values_for_type(x509.DNSName)}


def load_ca(path: Path) -> x509.Certificate:
    """The CA that signs the gateway (and the user's certificate), read as the CLI reads it."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as e:
        raise UsageError(f"CA {path}: {e.strerror} (ikemgr pki init, or --ca)") from None
    except ValueError:
        raise UsageError(f"CA {path}: not a PEM certificate") from None


def credential_from_p12(data: bytes, password: bytes, identity: str, ca: x509.Certificate,
                        source: str) -> Credential:
    """Unpack a user's PKCS#12 and check it is the identity's, issued by ``ca``.

    ``source`` names the bundle in the error (its path): a profile built from another
    user's or another CA's certificate would connect as someone else or not at all.
    """
    try:
        key, cert = pkcs12.load(data, password)
    except ValueError as e:
        raise UsageError(f"--cert: {source} cannot be opened ({e})") from None
    if identity not in _identities(cert):
        raise UsageError(f"--cert: the certificate in {source} is not issued to {identity}")
    if cert.issuer != ca.subject:
        raise UsageError(f"--cert: the certificate in {source} is not issued by the CA "
                         f"{ca.subject.rfc4514_string()}")
    return Credential(data, cert_pem(cert), key_pem(key), _key_type(cert))


def profile_input(cfg: Config, user: str, ca: x509.Certificate, *, auth: str = "eap",
                  tunnel: str | None = None, connect_to: str = "fqdn",
                  p12: tuple[bytes, bytes, str] | None = None,
                  password: str | None = None) -> ProfileInput:
    """The one way a ``ProfileInput`` is built: ``ikemgr profile`` and the lab's clients.

    ``user`` goes through the identity grammar; ``p12`` is (bundle, its password, where it
    came from) for tls/cert logins; ``password`` (eap only) lands in a swanctl secrets
    section. Bad values are a ``UsageError`` naming the option, as on the command line.
    """
    if auth not in ("eap", "tls", "cert"):
        raise UsageError("--auth must be eap, tls or cert")
    if auth != "eap" and p12 is None:
        raise UsageError(f"--auth {auth} needs the user's certificate (--cert P12)")
    if password is not None and auth != "eap":
        raise UsageError("--password-file is for --format swanctl with --auth eap only")
    tun = tunnel or default_tunnel(cfg)
    if tun not in ("full", "split"):
        raise UsageError("--tunnel must be full or split")
    if connect_to not in ("fqdn", "ip"):
        raise UsageError("--connect-to must be fqdn or ip")
    ident = str(user_identity(cfg, user))
    cns = ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return ProfileInput(
        cfg=cfg, identity=ident, auth=cast(Auth, auth),
        ca_pem=cert_pem(ca), ca_der=ca.public_bytes(serialization.Encoding.DER),
        ca_cn=str(cns[0].value) if cns else ca.subject.rfc4514_string(),
        remote=cfg.gateway.fqdn if connect_to == "fqdn" else str(cfg.gateway.outside.address.ip),
        tunnel=cast(Tunnel, tun),
        credential=credential_from_p12(*p12[:2], ident, ca, p12[2]) if p12 is not None else None,
        password=password)


def _read_p12(p12_path: Path, pw_file: Path | None) -> tuple[bytes, bytes, str]:
    if pw_file is None:
        raise UsageError("--cert needs --p12-password-file (the bundle is checked and unpacked)")
    try:
        data = p12_path.read_bytes()
    except OSError as e:
        raise UsageError(f"--cert: {p12_path}: {e.strerror}") from None
    return data, password_from_file(pw_file, create=False), str(p12_path)


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile(
        user: str = typer.Option(..., "--user", help="account@NNNNNN or account."),
        fmt: str = typer.Option(..., "--format", help="mobileconfig, sswan, powershell, swanctl, "
                                "networkmanager."),
        out: Path = typer.Option(..., "--out", help="File to write (a directory for swanctl)."),
        auth: str | None = typer.Option(None, "--auth", help="eap (default), tls (EAP-TLS) or "
                                        "cert (IKEv2 certificate); tls/cert need --cert."),
        cert: Path | None = typer.Option(None, "--cert", help="The user's PKCS#12 (ikemgr pki "
                                         "issue-client; the -legacy.p12 for Apple)."),
        p12_password_file: Path | None = typer.Option(None, "--p12-password-file"),
        password_file: Path | None = typer.Option(
            None, "--password-file", help="swanctl only: put the EAP password in a secrets section."),
        tunnel: str | None = typer.Option(None, "--tunnel", help="full or split (campus_prefixes); "
                                          "default: from strongswan.local_ts."),
        connect_to: str = typer.Option("fqdn", "--connect-to", help="fqdn (gateway.fqdn) or ip "
                                       "(gateway.outside address)."),
        ca: Path | None = typer.Option(None, "--ca", help="CA certificate (default: <pki.dir>/ca.crt)."),
        config: Path = ConfigOpt, as_json: bool = JsonOpt,
    ) -> None:
        """Write a VPN profile for one user: the server's FQDN, proposals and CA, the user's login."""

        def body() -> Result:
            cfg = load_config(config)
            if fmt not in FORMATS:
                raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
            mode = auth or ("cert" if cert is not None else "eap")
            if password_file is not None and fmt != "swanctl":
                raise UsageError("--password-file is for --format swanctl with --auth eap only")
            ca_cert = load_ca(ca or cfg.pki.dir / "ca.crt")
            password = None
            if password_file is not None:
                try:
                    password = password_from_file(password_file, create=False).decode()
                except UnicodeDecodeError:
                    raise UsageError(f"{password_file}: the password is not UTF-8") from None
            inp = profile_input(cfg, user, ca_cert, auth=mode, tunnel=tunnel, connect_to=connect_to,
                                p12=_read_p12(cert, p12_password_file) if cert else None,
                                password=password)
            tun = inp.tunnel
            try:
                files = build(cast(Format, fmt), inp, out)
            except Unexpressible as e:
                raise UsageError(f"the gateway's proposals cannot be expressed in {fmt}: {e}") from None
            except UnsafeValue as e:
                raise UsageError(str(e)) from None
            written = []
            for f in files:
                target = out / f.path if fmt == "swanctl" else (out if not f.path else out.parent / f.path)
                write(target, f.data, f.mode)
                written.append(str(target))
            return Result("profile", data={"user": inp.identity, "format": fmt, "auth": mode, "tunnel": tun,
                                           "files": written},
                          messages=tuple(f"wrote {w}" for w in written))

        run_command("profile", as_json, body)
