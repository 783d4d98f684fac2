"""Run a real OpenLDAP slapd with its own cn=config, database, port and optional netns.

For tests and the namespace lab: ``SlapdInstance(workdir, base_dn, port).start()``, then
``add_users([...])`` and finally ``stop()``. Entries are added with ldapadd over the
network (through ``ip netns exec`` when a netns is given), so the same code works from
outside the namespace. Only Debian's stock schemas are used (core, cosine, nis,
inetorgperson); ``nt_schema=True`` adds the one attribute FreeRADIUS reads for
EAP-MSCHAPv2, ``sambaNTPassword``, with Samba's own definition.

A disabled account carries ``shadowExpire: 1`` (nis schema, the ``usermod -e 1`` lock),
which the rendered FreeRADIUS user filter excludes.

With ``tls=SlapdTls(...)`` slapd gets a server certificate (olcTLSCertificateFile …), so
ldap:// offers StartTLS, and with ``ldaps_port`` it also listens on ldaps:// (own port,
same host). ``require=True`` sets ``olcSecurity: tls=1``: every operation on a connection
without TLS is refused ("confidentiality required"), so a client that gets an answer
provably talked TLS. The adapter's own ldapadd/ldapwhoami then use StartTLS (-ZZ) and
check slapd's certificate against ``tls.ca``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ikemgr.adapters.radius import nt_password_hash
from ikemgr.checks.procs import stop_group
from ikemgr.errors import ApplyFailed, BackendUnavailable

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
STOCK_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
MODULE_DIR = "/usr/lib/ldap"

#: Samba's definition of the NT hash attribute (samba.schema), nothing else from it.
NT_SCHEMA_LDIF = """dn: cn=ikemgr-nt,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: ikemgr-nt
olcAttributeTypes: ( 1.3.6.1.4.1.7165.2.1.25 NAME 'sambaNTPassword' DESC 'MD4 hash of the
  unicode password' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{32}
  SINGLE-VALUE )
"""


@dataclass(frozen=True)
class SlapdTls:
    """slapd's server certificate and key (PEM), the CA that signed it, and the ldaps:// port."""

    cert: Path
    key: Path
    ca: Path
    ldaps_port: int | None = None
    require: bool = False


@dataclass(frozen=True)
class LdapUser:
    uid: str
    password: str
    nt_hash: str | None = None
    disabled: bool = False
    cn: str | None = None


def ssha(password: str) -> str:
    """The {SSHA} form slapd verifies on bind."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - the LDAP scheme
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def nt_hash(password: str) -> str:
    """The hex NT hash (MD4 of UTF-16LE) as Samba stores it in sambaNTPassword."""
    return nt_password_hash(password).hex().upper()


def ldif_attr(name: str, value: str) -> str:
    """One LDIF line, always base64 so no value can break the record."""
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def _rdn_value(dn: str) -> tuple[str, str]:
    typ, _, value = dn.split(",", 1)[0].partition("=")
    return typ.strip().lower(), value.strip()


class SlapdInstance:
    """One slapd on 127.0.0.1:``port`` (inside ``netns`` if given) serving ``base_dn``."""

    def __init__(self, workdir: Path, base_dn: str, port: int, netns: str | None = None,
                 nt_schema: bool = True, host: str = "127.0.0.1", tls: SlapdTls | None = None,
                 extra_schema_ldif: str = "") -> None:
        self.tls = tls
        #: additional olcSchemaConfig entries (LDIF), e.g. a test attribute with octet-string syntax
        self.extra_schema_ldif = extra_schema_ldif
        self.workdir = Path(workdir)
        self.base_dn = base_dn
        self.port = port
        self.netns = netns
        self.nt_schema = nt_schema
        self.host = host
        self.root_dn = f"cn=admin,{base_dn}"
        self.root_password = secrets.token_hex(12)
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf_dir = self.workdir / "slapd.d"
        self.db_dir = self.workdir / "db"
        self.pw_file = self.workdir / "root.pw"
        self.log_path = self.workdir / "slapd.out"

    @property
    def uri(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        if self.tls is None or self.tls.ldaps_port is None:
            raise ApplyFailed("this slapd has no ldaps:// listener")
        return f"ldaps://{self.host}:{self.tls.ldaps_port}"

    @property
    def listeners(self) -> str:
        """slapd -h: ldap:// always, ldaps:// when configured."""
        urls = [f"{self.uri}/"]
        if self.tls is not None and self.tls.ldaps_port is not None:
            urls.append(f"{self.ldaps_uri}/")
        return " ".join(urls)

    def _tls_ldif(self) -> str:
        if self.tls is None:
            return ""
        return (f"olcTLSCertificateFile: {self.tls.cert}\nolcTLSCertificateKeyFile: {self.tls.key}\n"
                f"olcTLSCACertificateFile: {self.tls.ca}\n"
                + ("olcSecurity: tls=1\n" if self.tls.require else ""))

    def _ns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def _config_ldif(self) -> str:
        includes = "".join(f"include: file://{SCHEMA_DIR}/{s}.ldif\n\n" for s in STOCK_SCHEMAS)
        secret_attrs = "userPassword,sambaNTPassword" if self.nt_schema else "userPassword"
        return (
            f"dn: cn=config\nobjectClass: olcGlobal\ncn: config\n"
            f"olcPidFile: {self.workdir}/slapd.pid\nolcArgsFile: {self.workdir}/slapd.args\n"
            f"{self._tls_ldif()}\n"
            f"dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n"
            f"olcModulePath: {MODULE_DIR}\nolcModuleLoad: back_mdb\n\n"
            f"dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n"
            f"{includes}"
            + (NT_SCHEMA_LDIF + "\n" if self.nt_schema else "")
            + (self.extra_schema_ldif.strip() + "\n\n" if self.extra_schema_ldif.strip() else "")
            + "dn: olcDatabase={0}config,cn=config\nobjectClass: olcDatabaseConfig\n"
            "olcDatabase: {0}config\nolcAccess: {0}to * by * none\n\n"
            "dn: olcDatabase={1}mdb,cn=config\nobjectClass: olcDatabaseConfig\n"
            "objectClass: olcMdbConfig\nolcDatabase: {1}mdb\n"
            f"olcSuffix: {self.base_dn}\nolcRootDN: {self.root_dn}\n"
            f"olcRootPW: {ssha(self.root_password)}\nolcDbDirectory: {self.db_dir}\n"
            "olcDbMaxSize: 67108864\nolcDbIndex: uid eq\n"
            f"olcAccess: {{0}}to attrs={secret_attrs} by self write by anonymous auth by * none\n"
            "olcAccess: {1}to * by * read\n"
        )

    def start(self, timeout: float = 20.0) -> SlapdInstance:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(exist_ok=True)
        self.db_dir.mkdir(exist_ok=True)
        fd = os.open(self.pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.root_password)
        ldif = self.workdir / "config.ldif"
        ldif.write_text(self._config_ldif())
        r = subprocess.run([SLAPADD, "-n0", "-F", str(self.conf_dir), "-l", str(ldif)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise BackendUnavailable("ldap", f"slapadd of cn=config failed: {r.stderr.strip()}")
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        try:
            # -d 0: stay in the foreground (we own the process) and log nothing extra
            self.proc = subprocess.Popen(
                self._ns([SLAPD, "-d", "0", "-F", str(self.conf_dir), "-h", self.listeners]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._run(["ldapwhoami", *self._tool_args()]).returncode == 0:
                self._add_base()
                return self
            time.sleep(0.1)
        out = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise BackendUnavailable("ldap", f"slapd did not become ready: {out}")

    def _tool_args(self) -> list[str]:
        """Simple bind as the root DN; over StartTLS (-ZZ: TLS or fail) when slapd has a certificate."""
        tls = ["-ZZ"] if self.tls is not None else []
        return ["-x", *tls, "-H", self.uri, "-D", self.root_dn, "-y", str(self.pw_file)]

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = None
        if self.tls is not None:
            env = {**os.environ, "LDAPTLS_CACERT": str(self.tls.ca), "LDAPTLS_REQCERT": "demand"}
        return subprocess.run(self._ns(argv), input=stdin, capture_output=True, text=True, timeout=30,
                              env=env)

    def ldapadd(self, ldif: str) -> None:
        r = self._run(["ldapadd", *self._tool_args()], stdin=ldif)
        if r.returncode != 0:
            raise ApplyFailed(f"ldapadd failed: {r.stderr.strip()}")

    def ldapmodify(self, ldif: str) -> None:
        """Change entries (changetype: modify / delete records) as the root DN."""
        r = self._run(["ldapmodify", *self._tool_args()], stdin=ldif)
        if r.returncode != 0:
            raise ApplyFailed(f"ldapmodify failed: {r.stderr.strip()}")

    def _add_base(self) -> None:
        typ, value = _rdn_value(self.base_dn)
        if typ == "dc":
            classes = "objectClass: dcObject\nobjectClass: organization\n"
            entry = f"{ldif_attr('dc', value)}\n{ldif_attr('o', value)}\n"
        elif typ == "o":
            classes, entry = "objectClass: organization\n", f"{ldif_attr('o', value)}\n"
        else:
            classes, entry = "objectClass: organizationalUnit\n", f"{ldif_attr('ou', value)}\n"
        self.ldapadd(f"{ldif_attr('dn', self.base_dn)}\n{classes}{entry}")

    def add_ou(self, ou: str) -> str:
        dn = f"ou={ou},{self.base_dn}"
        self.ldapadd(f"{ldif_attr('dn', dn)}\nobjectClass: organizationalUnit\n{ldif_attr('ou', ou)}\n")
        return dn

    def add_users(self, users: list[LdapUser], under: str | None = None) -> list[str]:
        """Add person entries below ``under`` (default: the base DN); returns their DNs."""
        parent = under or self.base_dn
        records, dns = [], []
        for u in users:
            dn = f"uid={u.uid},{parent}"
            lines = [ldif_attr("dn", dn), "objectClass: inetOrgPerson", "objectClass: shadowAccount",
                     ldif_attr("uid", u.uid), ldif_attr("cn", u.cn or u.uid), ldif_attr("sn", u.uid),
                     ldif_attr("userPassword", ssha(u.password))]
            if u.nt_hash is not None:
                lines += ["objectClass: extensibleObject", ldif_attr("sambaNTPassword", u.nt_hash)]
            if u.disabled:
                lines.append("shadowExpire: 1")
            records.append("\n".join(lines) + "\n")
            dns.append(dn)
        if records:
            self.ldapadd("\n".join(records))
        return dns

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        stop_group(proc, timeout)

    def __enter__(self) -> SlapdInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
