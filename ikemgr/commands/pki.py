"""`ikemgr pki init | issue-server | issue-client | revoke | crl`: ikemgr's CA, or the operator's.

Thin: options → ``PkiStore`` → ``Result``. Keys and PKCS#12 passwords are never printed;
results name the files and serials.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.config.schema import Config
from ikemgr.errors import UsageError
from ikemgr.pki import pkcs12
from ikemgr.pki.names import client_cn, client_subject_rdns, user_identity
from ikemgr.pki.store import PkiStore, password_from_file
from ikemgr.result import Result, TableData

DirOpt = typer.Option(None, "--dir", help="PKI directory (default: pki.dir from the config).")
CaCertOpt = typer.Option(None, "--ca-cert", help="An existing CA certificate (PEM) to sign with.")
CaKeyOpt = typer.Option(None, "--ca-key", help="Its private key (PEM).")
CaKeyPwOpt = typer.Option(None, "--ca-key-password-file", help="File holding the CA key's password.")
ForceOpt = typer.Option(False, "--force", help="Replace an existing certificate of that name.")


def _store(cfg: Config, directory: Path | None, ca_cert: Path | None, ca_key: Path | None,
           ca_key_pw: Path | None) -> PkiStore:
    pw = password_from_file(ca_key_pw, create=False) if ca_key_pw is not None else None
    return PkiStore(directory or cfg.pki.dir, cfg.pki, ca_cert, ca_key, pw)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="A CA for the gateway and EAP-TLS clients.")
    app.add_typer(sub, name="pki")

    @sub.command("init")
    def init(config: Path = ConfigOpt, directory: Path | None = DirOpt,
             as_json: bool = JsonOpt) -> None:
        """Create ikemgr's CA (key 0600) in the PKI directory; never replaces one."""

        def body() -> Result:
            cfg = load_config(config)
            store = _store(cfg, directory, None, None, None)
            cert = store.init()
            return Result("pki init", data={"dir": str(store.dir), "ca": str(store.ca_cert_path),
                                            "subject": cert.subject.rfc4514_string(),
                                            "serial": f"{cert.serial_number:x}"},
                          messages=(f"CA {cert.subject.rfc4514_string()} in {store.dir}",))

        run("pki init", as_json, body)

    @sub.command("issue-server")
    def issue_server(config: Path = ConfigOpt, directory: Path | None = DirOpt,
                     ip: list[str] = typer.Option([], "--ip", help="Add an IP SAN (repeatable)."),
                     outside_ip: bool = typer.Option(False, "--outside-ip",
                                                     help="Add gateway.outside's address as IP SAN."),
                     ca_cert: Path | None = CaCertOpt, ca_key: Path | None = CaKeyOpt,
                     ca_key_pw: Path | None = CaKeyPwOpt, force: bool = ForceOpt,
                     as_json: bool = JsonOpt) -> None:
        """The gateway certificate: CN and DNS SAN = gateway.fqdn, serverAuth + ikeIntermediate."""

        def body() -> Result:
            cfg = load_config(config)
            ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
            for text in ip:
                try:
                    ips.append(ipaddress.ip_address(text))
                except ValueError:
                    raise UsageError(f"--ip: {text[:60]!r} is not an IP address") from None
            if outside_ip:
                ips.append(cfg.gateway.outside.address.ip)
            store = _store(cfg, directory, ca_cert, ca_key, ca_key_pw)
            issued = store.issue_server(cfg.gateway.fqdn, list(dict.fromkeys(ips)), force)
            return Result("pki issue-server", data=issued.to_json(),
                          messages=(f"server certificate {issued.subject} serial {issued.serial:x}: "
                                    f"{issued.cert} (key {issued.key}, 0600)",))

        run("pki issue-server", as_json, body)

    @sub.command("issue-client")
    def issue_client(user: str = typer.Option(..., "--user", help="account@NNNNNN or account."),
                     config: Path = ConfigOpt, directory: Path | None = DirOpt,
                     p12: str = typer.Option("both", "--p12",
                                             help="PKCS#12 export: both, legacy, modern or none."),
                     p12_password_file: Path | None = typer.Option(
                         None, "--p12-password-file",
                         help="PKCS#12 password (first line); created with a random one if missing."),
                     ca_cert: Path | None = CaCertOpt, ca_key: Path | None = CaKeyOpt,
                     ca_key_pw: Path | None = CaKeyPwOpt, force: bool = ForceOpt,
                     as_json: bool = JsonOpt) -> None:
        """An EAP-TLS / certificate client: Subject = the configured RDNs + CN, clientAuth."""

        def body() -> Result:
            cfg = load_config(config)
            ident = user_identity(cfg, user)
            encodings = _encodings(p12)
            if encodings and p12_password_file is None:
                raise UsageError("--p12-password-file is needed for PKCS#12 export (or --p12 none)")
            pw = password_from_file(p12_password_file, create=True) if encodings and p12_password_file \
                else None
            store = _store(cfg, directory, ca_cert, ca_key, ca_key_pw)
            issued = store.issue_client(str(ident), client_cn(cfg, ident), client_subject_rdns(cfg),
                                        pw, encodings, force)
            msgs = [f"client certificate {issued.subject} serial {issued.serial:x}: {issued.cert} "
                    f"(key {issued.key}, 0600)"]
            msgs += [f"PKCS#12: {p} (password in {p12_password_file})" for p in issued.p12]
            return Result("pki issue-client", data=issued.to_json(), messages=tuple(msgs))

        run("pki issue-client", as_json, body)

    @sub.command("revoke")
    def revoke(config: Path = ConfigOpt, directory: Path | None = DirOpt,
               serial: str | None = typer.Option(None, "--serial", help="Serial (hex) to revoke."),
               name: str | None = typer.Option(None, "--name", help="Revoke every live cert of this name."),
               reason: str = typer.Option("unspecified", "--reason",
                                          help="unspecified, keyCompromise, affiliationChanged, "
                                               "superseded, cessationOfOperation"),
               as_json: bool = JsonOpt) -> None:
        """Record a revocation in the index; `ikemgr pki crl` publishes it."""

        def body() -> Result:
            cfg = load_config(config)
            store = _store(cfg, directory, None, None, None)
            serials = store.revoke(serial=serial, name=name, reason=reason)
            return Result("pki revoke", data={"revoked": serials, "reason": reason},
                          messages=(f"revoked {', '.join(serials)} ({reason}); run `ikemgr pki crl` "
                                    "and reload the CRL into charon and FreeRADIUS",))

        run("pki revoke", as_json, body)

    @sub.command("crl")
    def crl_cmd(config: Path = ConfigOpt, directory: Path | None = DirOpt,
                ca_cert: Path | None = CaCertOpt, ca_key: Path | None = CaKeyOpt,
                ca_key_pw: Path | None = CaKeyPwOpt, as_json: bool = JsonOpt) -> None:
        """Write crl.pem and crl.der (every revoked serial, nextUpdate = pki.crl_days)."""

        def body() -> Result:
            cfg = load_config(config)
            store = _store(cfg, directory, ca_cert, ca_key, ca_key_pw)
            number, serials = store.write_crl()
            rows = tuple((s,) for s in serials)
            return Result("pki crl", data={"number": number, "revoked": serials,
                                           "pem": str(store.crl_pem), "der": str(store.crl_der)},
                          messages=(f"CRL #{number} with {len(serials)} revoked: {store.crl_pem}, "
                                    f"{store.crl_der}",),
                          tables=(TableData("revoked serials", ("serial",), rows),) if rows else ())

        run("pki crl", as_json, body)


def _encodings(choice: str) -> tuple[pkcs12.Encoding, ...]:
    table: dict[str, tuple[Literal["legacy", "modern"], ...]] = {
        "both": ("legacy", "modern"), "legacy": ("legacy",), "modern": ("modern",), "none": ()}
    if choice not in table:
        raise UsageError("--p12 must be both, legacy, modern or none")
    return table[choice]
