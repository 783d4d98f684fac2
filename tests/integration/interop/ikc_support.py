"""Helpers for the interop proofs: real charons in namespaces of our own (prefix ``ikc-``) for the interop proofs.

The gateway charon runs the files ``ikemgr render`` writes (its swanctl conf.d, its
eap-radius include) with the lab's gateway plugin list; clients are strongSwan initiators
that authenticate with certificates issued here with the ``cryptography`` library, so no
RADIUS is involved. Two namespaces joined by one veth: ``<ns>g`` (gateway, out0
192.0.2.1) and ``<ns>c`` (clients, eth0 192.0.2.100). ESP is kernel-libipsec with UDP
encapsulation (this kernel has no ESP). Everything is removed at teardown.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from helpers import IKEMGR
from helpers.gateway import gateway_doc
from ikemgr.checks.charon import BASE_PLUGINS, LIBIPSEC_PLUGINS, CharonInstance
from ikemgr.config.load import load
from ikemgr_lab.charons import gateway_instance  # the lab's gateway plugin list

GW_IP, CLIENT_IP = "192.0.2.1", "192.0.2.100"
FQDN = "vpn.example.test"
ORG = "Example University"
SUBJECT_RULE = f"C=JP, O={ORG}"
WORK = Path("/tmp/ikemgr-ikc")
#: the gateway's links in the check-host namespace (conftest.py: host_ns)
HOST_IFACES = ("out0", "campus0", "lab0")
IKE_OID = x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2")



# --------------------------------------------------------------------------- certificates


@dataclass
class Issued:
    cert: Path
    key: Path


@dataclass
class Pki:
    dir: Path
    ca: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    def issue(self, name: str, subject: list[tuple[x509.ObjectIdentifier, str]], *,
              dns: list[str] | None = None, ekus: list[x509.ObjectIdentifier] | None = None,
              days: int = 90, signer: ec.EllipticCurvePrivateKey | None = None,
              not_before: datetime | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.now(UTC) - timedelta(minutes=5)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in subject]))
             .issuer_name(self.ca_cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(start + timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if dns:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        if ekus:
            b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        cert = b.sign(signer or self.ca_key, hashes.SHA256())
        out = Issued(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(out.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return out

    def client(self, name: str, cn: str, org: str = ORG) -> Issued:
        return self.issue(name, [(NameOID.COUNTRY_NAME, "JP"), (NameOID.ORGANIZATION_NAME, org),
                                 (NameOID.COMMON_NAME, cn)],
                          ekus=[ExtendedKeyUsageOID.CLIENT_AUTH])

    def server(self, name: str = "gateway", **kw: Any) -> Issued:
        kw.setdefault("dns", [FQDN])
        kw.setdefault("ekus", [ExtendedKeyUsageOID.SERVER_AUTH, IKE_OID])
        return self.issue(name, [(NameOID.COUNTRY_NAME, "JP"), (NameOID.ORGANIZATION_NAME, ORG),
                                 (NameOID.COMMON_NAME, FQDN)], **kw)


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, "ikc test CA")])
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + timedelta(days=120))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    path = d / "ca.crt"
    path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Pki(d, path, key, ca)


# --------------------------------------------------------------------------- charons


def sas(inst: CharonInstance) -> list[dict[str, Any]]:
    """Every IKE SA as a dict with text values (name under "name"), via the product's session."""
    from ikemgr_lab.charons import list_sas

    return list_sas(inst.vici_path)



@dataclass
class Topology:
    ns: str
    work: Path
    pki: Pki
    started: list[CharonInstance] = field(default_factory=list)

    @property
    def gw_ns(self) -> str:
        return self.ns + "g"

    @property
    def client_ns(self) -> str:
        return self.ns + "c"

    def config(self, name: str, **extra: Any) -> Path:
        """A gateway config (JSON is YAML) for this topology; ``extra`` merges per section."""
        secret = self.work / "radius.secret"
        secret.write_text("s3cret-for-ikc-tests\n")
        secret.chmod(0o600)  # render refuses a secret everyone can read
        own: dict[str, Any] = {
            "radius": {"secret_file": str(secret)},
            "strongswan": {"kernel_ipsec": "libipsec", "encap": True},
            "strongswan_cert_auth": {"enabled": True, "subject": SUBJECT_RULE},
            "routing": {"rt_tables_file": str(self.work / "rt_tables.conf")},
            "policy": {"state_dir": str(self.work / "state"), "lock_file": str(self.work / "ikemgr.lock")},
        }
        vlans = extra.pop("vlans", [])  # no lab VLAN unless a test's per-user policy needs one
        for k, v in extra.items():
            own[k] = {**own.get(k, {}), **v} if isinstance(v, dict) else v
        doc = gateway_doc(outside="out0", campus="campus0", campus_prefixes=("10.0.0.0/8",), vlans=vlans,
                          **own)
        doc["gateway"]["cert"] = str(self.pki.dir / "gateway.crt")
        doc["gateway"]["key"] = str(self.pki.dir / "gateway.key")
        doc["gateway"]["ca"] = str(self.pki.ca)
        path = self.work / f"{name}.yaml"
        path.write_text(json.dumps(doc, indent=1))
        return path

    def render(self, config: Path) -> Path:
        out = self.work / f"rendered-{config.stem}"
        r = subprocess.run([str(IKEMGR), "render", "-c", str(config), "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return out

    def gateway(self, config: Path, charon_settings: str = "") -> CharonInstance:
        """The gateway charon running exactly what ``ikemgr render`` wrote for ``config``;
        ``charon_settings`` is added inside ``charon { }`` (e.g. short retransmits, so DPD
        gives up within seconds)."""
        cfg = load(config)
        rendered = self.render(config)
        inst = gateway_instance(cfg, self.work / f"gw-{config.stem}", self.gw_ns, rendered)
        inst.charon_settings += charon_settings
        inst.prepare()
        d = inst.swanctl_dir
        (d / "x509ca" / "ca.crt").write_bytes(self.pki.ca.read_bytes())
        (d / "x509" / "gateway.crt").write_bytes((self.pki.dir / "gateway.crt").read_bytes())
        key = d / "private" / "gateway.key"
        key.write_bytes((self.pki.dir / "gateway.key").read_bytes())
        key.chmod(0o600)
        for f in (rendered / "swanctl" / "conf.d").glob("*.conf"):
            (d / "conf.d" / f.name).write_text(f.read_text())
        inst.start()
        self.started.append(inst)
        inst.load_all()
        return inst

    def client(self, name: str, swanctl_conf: str, certs: dict[str, Issued]) -> CharonInstance:
        """A client charon; ``certs`` maps a file stem (``certs = <stem>.crt``) to its cert."""
        inst = CharonInstance(self.work / f"client-{name}", netns=self.client_ns,
                              plugins=[*BASE_PLUGINS, *LIBIPSEC_PLUGINS])
        inst.prepare()
        d = inst.swanctl_dir
        (d / "x509ca" / "ca.crt").write_bytes(self.pki.ca.read_bytes())
        for stem, cert in certs.items():
            (d / "x509" / f"{stem}.crt").write_bytes(cert.cert.read_bytes())
            key = d / "private" / f"{stem}.key"
            key.write_bytes(cert.key.read_bytes())
            key.chmod(0o600)
        (d / "conf.d" / "client.conf").write_text(swanctl_conf)
        inst.start()
        self.started.append(inst)
        inst.load_all()
        return inst

    def stop(self, inst: CharonInstance) -> None:
        inst.stop()
        if inst in self.started:
            self.started.remove(inst)


def client_conn(name: str, *, cert: str = "client", remote_ts: str = "10.0.0.0/8", ike: str = "default",
                esp: str = "default", ike_rekey: int = 0, child_rekey: int = 0, child_life: int = 0) -> str:
    """One certificate-auth initiator connection with optional short lifetimes."""
    ike_times = f"        rekey_time = {ike_rekey}s\n        over_time = 3s\n        rand_time = 1s\n" \
        if ike_rekey else ""
    child_times = (f"                rekey_time = {child_rekey}s\n                life_time = {child_life}s\n"
                   "                rand_time = 1s\n") if child_rekey else ""
    return f"""    {name} {{
        version = 2
        remote_addrs = {GW_IP}
        vips = 0.0.0.0
        encap = yes
        proposals = {ike}
        # the gateway's IKE_SA_INIT carries the EAP connection's send_certreq = no (charon picks
        # the first of two equal IKE configs), so a certificate client must send its cert unasked
        send_cert = always
{ike_times}        local {{
            auth = pubkey
            certs = {cert}.crt
        }}
        remote {{
            auth = pubkey
            id = {FQDN}
        }}
        children {{
            {name} {{
                remote_ts = {remote_ts}
                esp_proposals = {esp}
{child_times}            }}
        }}
    }}
"""


def wrap(*conns: str) -> str:
    return "connections {\n" + "".join(conns) + "}\n"


