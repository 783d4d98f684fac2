"""Every profile format from one config: parsed back and compared with the server's proposals."""

from __future__ import annotations

import base64
import configparser
import dataclasses
import json
import plistlib
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from clients_support import PASSWORD, config_dict, issue_client, make_config
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr.config.schema import Config
from ikemgr.pki.store import PkiStore
from ikemgr.render.profiles import apple, build, networkmanager, sswan, swanctl, windows
from ikemgr.render.profiles.common import Credential, ProfileInput, UnsafeValue
from ikemgr.render.profiles.proposals import Unexpressible, parse, server_proposals

HOSTILE_ESCAPED = ["a'b", 'a"b', "a<b>&", "$(x)", "a;b", "a`b", "a\\b"]
HOSTILE_REFUSED = ["a\nb", "a\rb", "a\x00b"]


def inp_for(cfg: Config, store: PkiStore, *, identity: str = "alice@123456", auth: str = "eap",
            tunnel: str = "full", password: str | None = None) -> ProfileInput:
    ca = x509.load_pem_x509_certificate(store.ca_cert_path.read_bytes())
    cred = None
    if auth != "eap":
        issued = issue_client(cfg, store, identity) if not store.cert_path(identity).exists() else None
        p12 = (issued.p12[0] if issued else store.p12_path(identity, "legacy")).read_bytes()
        cred = Credential(p12, store.cert_path(identity).read_bytes(),
                          store.key_path(identity).read_bytes(), "ECDSA256")
    return ProfileInput(cfg=cfg, identity=identity, auth=auth,  # type: ignore[arg-type]
                        ca_pem=store.ca_cert_path.read_bytes(),
                        ca_der=ca.public_bytes(serialization.Encoding.DER),
                        ca_cn="Example University IKEv2 CA", remote=str(cfg.gateway.outside.address.ip),
                        tunnel=tunnel, credential=cred, password=password)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- proposals

def test_proposal_parse() -> None:
    p = parse("aes256gcm16-prfsha256-ecp256-modp2048")
    assert (p.encr, p.integ, p.prf, p.groups, p.no_pfs, p.aead) == (
        ("aes256gcm16",), (), ("sha256",), ("ecp256", "modp2048"), False, True)
    q = parse("aes256-sha1-modp2048-modp1024-modpnone")
    assert q.groups == ("modp2048", "modp1024") and q.no_pfs and not q.aead
    with pytest.raises(ValueError):
        parse("aes256-sha256-bogus")


def test_server_proposals_are_the_rendered_ones(cfg: Config) -> None:
    sp = server_proposals(cfg)
    assert sp.ike == tuple(cfg.strongswan.proposals) and sp.esp == tuple(cfg.strongswan.esp_proposals)
    assert "default" not in sp.explicit("ike") and sp.explicit("ike")[0] == cfg.strongswan.proposals[0]


# ----------------------------------------------------------------------------- Apple

def _vpn_payload(data: bytes) -> dict[str, Any]:
    top = plistlib.loads(data)
    assert top["PayloadType"] == "Configuration" and top["PayloadVersion"] == 1
    uuid.UUID(top["PayloadUUID"])
    (vpn,) = [p for p in top["PayloadContent"] if p["PayloadType"] == "com.apple.vpn.managed"]
    assert vpn["VPNType"] == "IKEv2"
    return vpn


def test_mobileconfig_eap(cfg: Config, store: PkiStore) -> None:
    (f,) = apple.build(inp_for(cfg, store))
    top = plistlib.loads(f.data)
    kinds = [p["PayloadType"] for p in top["PayloadContent"]]
    assert kinds == ["com.apple.security.root", "com.apple.vpn.managed"]
    root = top["PayloadContent"][0]
    assert root["PayloadContent"] == x509.load_pem_x509_certificate(
        store.ca_cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    ike = _vpn_payload(f.data)["IKEv2"]
    assert ike["RemoteAddress"] == "192.0.2.10" and ike["RemoteIdentifier"] == "vpn.example.ac.jp"
    assert ike["LocalIdentifier"] == "alice@123456" and ike["AuthName"] == "alice@123456"
    assert ike["AuthenticationMethod"] == "None" and ike["ExtendedAuthEnabled"] == 1
    assert ike["DisableMOBIKE"] == 0 and ike["EnableFallback"] is False
    # default proposals: IKE aes256-sha256-x25519 first; ESP aes256gcm16-ecp256-…-modpnone
    assert ike["IKESecurityAssociationParameters"] == {
        "EncryptionAlgorithm": "AES-256", "IntegrityAlgorithm": "SHA2-256",
        "DiffieHellmanGroup": 31, "LifeTimeInMinutes": 240}
    assert ike["ChildSecurityAssociationParameters"] == {
        "EncryptionAlgorithm": "AES-256-GCM", "DiffieHellmanGroup": 19, "LifeTimeInMinutes": 60}
    assert ike["EnablePFS"] is True
    assert f.mode == 0o644


def _cfg_with(tmp_path: Path, **ss: Any) -> Config:
    return make_config(tmp_path, strongswan=ss)


def test_mobileconfig_pfs_follows_the_server(tmp_path: Path, store: PkiStore) -> None:
    # PFS required by the server (groups, no modpnone): Apple must enable it with that group
    cfg = _cfg_with(tmp_path, proposals=["aes256-sha256-modp2048"], esp_proposals=["aes256-sha256-modp2048"],
                    mobike=False, rekey_time=0)
    ike = _vpn_payload(apple.build(inp_for(cfg, store))[0].data)["IKEv2"]
    assert ike["EnablePFS"] is True
    assert ike["ChildSecurityAssociationParameters"]["DiffieHellmanGroup"] == 14
    assert ike["ChildSecurityAssociationParameters"]["IntegrityAlgorithm"] == "SHA2-256"
    assert ike["IKESecurityAssociationParameters"]["LifeTimeInMinutes"] == 1440
    assert ike["DisableMOBIKE"] == 1
    # no groups on ESP: the server refuses a KE on rekey; Apple must not send one
    cfg = _cfg_with(tmp_path, proposals=["aes256-sha256-modp2048"], esp_proposals=["aes256-sha256"])
    ike = _vpn_payload(apple.build(inp_for(cfg, store))[0].data)["IKEv2"]
    assert ike["EnablePFS"] is False


def test_mobileconfig_certificate(cfg: Config, store: PkiStore) -> None:
    inp = inp_for(cfg, store, auth="cert")
    (f,) = apple.build(inp)
    top = plistlib.loads(f.data)
    (p12,) = [p for p in top["PayloadContent"] if p["PayloadType"] == "com.apple.security.pkcs12"]
    assert inp.credential is not None and p12["PayloadContent"] == inp.credential.p12
    ike = _vpn_payload(f.data)["IKEv2"]
    assert ike["AuthenticationMethod"] == "Certificate" and ike["ExtendedAuthEnabled"] == 0
    assert ike["PayloadCertificateUUID"] == p12["PayloadUUID"] and ike["CertificateType"] == "ECDSA256"
    assert "AuthName" not in ike and f.mode == 0o600
    tls = _vpn_payload(apple.build(inp_for(cfg, store, auth="tls"))[0].data)["IKEv2"]
    assert tls["AuthenticationMethod"] == "Certificate" and tls["ExtendedAuthEnabled"] == 1


def test_mobileconfig_is_deterministic(cfg: Config, store: PkiStore) -> None:
    assert apple.build(inp_for(cfg, store)) == apple.build(inp_for(cfg, store))


# ----------------------------------------------------------------------------- Android

SSWAN_TYPES = {"ikev2-eap", "ikev2-cert", "ikev2-cert-eap", "ikev2-eap-tls", "ikev2-byod-eap"}
SSWAN_KEYS = {"uuid", "name", "type", "remote", "local", "ike-proposal", "esp-proposal",
              "split-tunneling", "dns-servers", "mtu", "nat-keepalive", "selected-apps",
              "selected-apps-list", "proxy"}


def _sswan(data: bytes) -> dict[str, Any]:
    doc = json.loads(data.decode("utf-8"))
    assert set(doc) <= SSWAN_KEYS and {"uuid", "name", "type"} <= set(doc)
    uuid.UUID(doc["uuid"])
    assert doc["type"] in SSWAN_TYPES
    assert set(doc["remote"]) <= {"addr", "port", "id", "cert", "certreq", "revocation"}
    assert set(doc["local"]) <= {"id", "eap_id", "p12", "rsa-pss"}
    return doc


def test_sswan_eap_split(cfg: Config, store: PkiStore) -> None:
    doc = _sswan(sswan.build(inp_for(cfg, store, tunnel="split"))[0].data)
    assert doc["type"] == "ikev2-eap" and doc["local"] == {"eap_id": "alice@123456"}
    assert doc["remote"]["addr"] == "192.0.2.10" and doc["remote"]["id"] == "vpn.example.ac.jp"
    ca = x509.load_der_x509_certificate(base64.b64decode(doc["remote"]["cert"]))
    assert ca.public_bytes(serialization.Encoding.PEM) == store.ca_cert_path.read_bytes()
    assert doc["ike-proposal"] == cfg.strongswan.proposals[0]
    assert doc["esp-proposal"] == cfg.strongswan.esp_proposals[0]
    assert doc["split-tunneling"] == {"subnets": "10.0.0.0/8 172.16.0.0/12"}


def test_sswan_certificate_full(cfg: Config, store: PkiStore) -> None:
    inp = inp_for(cfg, store, auth="tls")
    doc = _sswan(sswan.build(inp)[0].data)
    assert doc["type"] == "ikev2-eap-tls" and doc["local"]["id"] == "alice@123456"
    assert inp.credential is not None and base64.b64decode(doc["local"]["p12"]) == inp.credential.p12
    assert doc["split-tunneling"] == {"block-ipv6": True}
    assert _sswan(sswan.build(inp_for(cfg, store, auth="cert"))[0].data)["type"] == "ikev2-cert"


# ----------------------------------------------------------------------------- Windows

def _ps_params(script: str) -> dict[str, str]:
    (line,) = [ln for ln in script.splitlines() if ln.startswith("Set-VpnConnectionIPsecConfiguration")]
    return dict(re.findall(r"-(\w+) '([^']*)'", line))


WINDOWS_CASES = [
    # (ike proposals, esp proposals, expected six values)
    (None, None, {"EncryptionMethod": "AES256", "IntegrityCheckMethod": "SHA256", "DHGroup": "ECP256",
                  "CipherTransformConstants": "GCMAES256", "AuthenticationTransformConstants": "GCMAES256",
                  "PfsGroup": "ECP256"}),
    (["aes128-sha1-modp1024"], ["aes128-sha1"],
     {"EncryptionMethod": "AES128", "IntegrityCheckMethod": "SHA1", "DHGroup": "Group2",
      "CipherTransformConstants": "AES128", "AuthenticationTransformConstants": "SHA196", "PfsGroup": "None"}),
    (["aes256-sha384-ecp384"], ["aes256-sha256-modp2048"],
     {"EncryptionMethod": "AES256", "IntegrityCheckMethod": "SHA384", "DHGroup": "ECP384",
      "CipherTransformConstants": "AES256", "AuthenticationTransformConstants": "SHA256128",
      "PfsGroup": "PFS2048"}),
    (["aes256gcm16-prfsha256-ecp256"], ["aes128gcm16"],
     {"EncryptionMethod": "GCMAES256", "IntegrityCheckMethod": "SHA256", "DHGroup": "ECP256",
      "CipherTransformConstants": "GCMAES128", "AuthenticationTransformConstants": "GCMAES128",
      "PfsGroup": "None"}),
]


@pytest.mark.parametrize(("ike", "esp", "want"), WINDOWS_CASES)
def test_powershell_matches_server_proposals(tmp_path: Path, store: PkiStore, ike: list[str] | None,
                                             esp: list[str] | None, want: dict[str, str]) -> None:
    ss: dict[str, Any] = {}
    if ike:
        ss["proposals"] = ike
    if esp:
        ss["esp_proposals"] = esp
    cfg = make_config(tmp_path, strongswan=ss)
    script = windows.build(inp_for(cfg, store))[0].data.decode("ascii")
    assert _ps_params(script) == want
    assert windows.ipsec_parameters(inp_for(cfg, store)) == want
    assert "-TunnelType Ikev2" in script and "-AuthenticationMethod Eap" in script
    assert "-EapConfigXmlStream $Eap.EapConfigXmlStream" in script
    assert "Cert:\\LocalMachine\\Root" in script and "-SplitTunneling" not in script


def test_powershell_split_routes_and_machine_certificate(cfg: Config, store: PkiStore) -> None:
    script = windows.build(inp_for(cfg, store, tunnel="split", auth="cert"))[0].data.decode()
    assert "-SplitTunneling" in script and "-AuthenticationMethod MachineCertificate" in script
    routes = re.findall(r"Add-VpnConnectionRoute .* -DestinationPrefix '([^']+)'", script)
    assert routes == ["10.0.0.0/8", "172.16.0.0/12"]
    assert "Import-PfxCertificate" in script and "Cert:\\LocalMachine\\My" in script


def test_powershell_refuses_what_windows_cannot_say(tmp_path: Path, store: PkiStore) -> None:
    cfg = make_config(tmp_path, strongswan={"proposals": ["aes256-sha256-x25519"]})
    with pytest.raises(Unexpressible):
        windows.build(inp_for(cfg, store))
    cfg = make_config(tmp_path, strongswan={"esp_proposals": ["chacha20poly1305-x25519"]})
    with pytest.raises(Unexpressible):
        windows.build(inp_for(cfg, store))


# ----------------------------------------------------------------------------- swanctl

def _files(files: list[Any]) -> dict[str, Any]:
    return {f.path: f for f in files}


def test_swanctl_directory_eap(cfg: Config, store: PkiStore) -> None:
    files = _files(swanctl.build(inp_for(cfg, store, tunnel="split")))
    assert set(files) == {"swanctl.conf", "x509ca/ca.pem"}
    conf = files["swanctl.conf"].data.decode()
    assert f"proposals = {','.join(cfg.strongswan.proposals)}\n" in conf
    assert f"esp_proposals = {','.join(cfg.strongswan.esp_proposals)}\n" in conf
    assert 'eap_id = "alice@123456"' in conf and "auth = eap-mschapv2" in conf
    assert "remote_ts = 10.0.0.0/8,172.16.0.0/12" in conf and "vips = 0.0.0.0" in conf
    assert 'id = "vpn.example.ac.jp"' in conf and "cacerts = ca.pem" in conf
    assert "secrets" not in conf and files["swanctl.conf"].mode == 0o644
    assert files["x509ca/ca.pem"].data == store.ca_cert_path.read_bytes()


def test_swanctl_directory_certificate(cfg: Config, store: PkiStore) -> None:
    files = _files(swanctl.build(inp_for(cfg, store, auth="cert")))
    assert set(files) == {"swanctl.conf", "x509ca/ca.pem", "x509/alice@123456.pem",
                          "private/alice@123456.pem"}
    assert files["private/alice@123456.pem"].mode == 0o600
    serialization.load_pem_private_key(files["private/alice@123456.pem"].data, None)
    conf = files["swanctl.conf"].data.decode()
    assert "auth = pubkey" in conf and 'certs = "alice@123456.pem"' in conf
    assert "remote_ts = 0.0.0.0/0" in conf


def test_swanctl_password_only_when_given(cfg: Config, store: PkiStore) -> None:
    files = _files(swanctl.build(inp_for(cfg, store, password='pa"ss\\word')))
    conf = files["swanctl.conf"].data.decode()
    assert 'secret = "pa\\"ss\\\\word"' in conf and files["swanctl.conf"].mode == 0o600


# ----------------------------------------------------------------------------- NetworkManager

def _keyfile(data: bytes) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(data.decode())
    return cp


def test_networkmanager_keyfile_eap(cfg: Config, store: PkiStore) -> None:
    files = networkmanager.build(inp_for(cfg, store, tunnel="split"), "/etc/ikemgr-vpn/alice")
    kf = _keyfile(files[0].data)
    assert kf["connection"]["type"] == "vpn" and files[0].mode == 0o600
    uuid.UUID(kf["connection"]["uuid"])
    vpn = kf["vpn"]
    assert vpn["service-type"] == "org.freedesktop.NetworkManager.strongswan"
    assert vpn["address"] == "192.0.2.10" and vpn["remote-identity"] == "vpn.example.ac.jp"
    assert vpn["certificate"] == "/etc/ikemgr-vpn/alice-ca.pem" and files[1].path == "alice-ca.pem"
    assert vpn["method"] == "eap" and vpn["user"] == "alice@123456" and vpn["virtual"] == "yes"
    assert vpn["proposal"] == "yes"
    assert vpn["ike"].split(";") == [p for p in cfg.strongswan.proposals if p != "default"]
    assert vpn["esp"].split(";") == [p for p in cfg.strongswan.esp_proposals if p != "default"]
    assert vpn["remote-ts"] == "10.0.0.0/8;172.16.0.0/12" and vpn["encap"] == "no"


def test_networkmanager_keyfile_certificate(cfg: Config, store: PkiStore) -> None:
    files = networkmanager.build(inp_for(cfg, store, auth="cert"), "/etc/ikemgr-vpn/alice")
    vpn = _keyfile(files[0].data)["vpn"]
    assert vpn["method"] == "cert" and vpn["cert-source"] == "file"
    assert vpn["usercert"] == "/etc/ikemgr-vpn/alice-cert.pem"
    assert vpn["userkey"] == "/etc/ikemgr-vpn/alice-key.pem" and "remote-ts" not in vpn
    assert {f.path: f.mode for f in files[1:]} == {"alice-ca.pem": 0o644, "alice-cert.pem": 0o644,
                                                   "alice-key.pem": 0o600}


# ----------------------------------------------------------------------------- hostile input

@pytest.mark.parametrize("name", HOSTILE_ESCAPED)
def test_mobileconfig_escapes(cfg: Config, store: PkiStore, name: str) -> None:
    ike = _vpn_payload(apple.build(inp_for(cfg, store, identity=name))[0].data)["IKEv2"]
    assert ike["AuthName"] == name and ike["LocalIdentifier"] == name


@pytest.mark.parametrize("name", HOSTILE_ESCAPED)
def test_sswan_escapes(cfg: Config, store: PkiStore, name: str) -> None:
    assert _sswan(sswan.build(inp_for(cfg, store, identity=name))[0].data)["local"]["eap_id"] == name


def _code_shape(script: str) -> list[str]:
    """The script's code with every single-quoted literal blanked and comments dropped."""
    lit = re.compile(r"'(?:[^']|'')*'")
    return [lit.sub("''", ln) for ln in script.splitlines() if not ln.lstrip().startswith("#")]


@pytest.mark.parametrize("name", HOSTILE_ESCAPED)
def test_powershell_escapes(cfg: Config, store: PkiStore, name: str) -> None:
    assert windows.ps(name) == "'" + name.replace("'", "''") + "'"
    alice = inp_for(cfg, store, auth="cert")
    base = windows.build(alice)[0].data.decode()
    hostile = windows.build(dataclasses.replace(alice, identity=name))[0].data.decode()
    assert windows.ps("Password of the certificate for " + name) in hostile
    # the name changes only the contents of literals and comments, never the code around them
    assert _code_shape(hostile) == _code_shape(base)
    with pytest.raises(UnsafeValue):
        windows.ps("a\u2019b")


@pytest.mark.parametrize("name", HOSTILE_ESCAPED)
def test_swanctl_escapes(cfg: Config, store: PkiStore, name: str) -> None:
    conf = _files(swanctl.build(inp_for(cfg, store, identity=name)))["swanctl.conf"].data.decode()
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    assert f'eap_id = "{escaped}"' in conf


@pytest.mark.parametrize("name", HOSTILE_ESCAPED)
def test_networkmanager_escapes_or_refuses(cfg: Config, store: PkiStore, name: str) -> None:
    if "\\" in name:
        with pytest.raises(UnsafeValue):
            networkmanager.build(inp_for(cfg, store, identity=name), "/x/alice")
        return
    vpn = _keyfile(networkmanager.build(inp_for(cfg, store, identity=name), "/x/alice")[0].data)["vpn"]
    assert vpn["user"] == name


@pytest.mark.parametrize("fmt", ["mobileconfig", "powershell", "swanctl", "networkmanager"])
@pytest.mark.parametrize("name", HOSTILE_REFUSED, ids=repr)
def test_control_characters_refused(cfg: Config, store: PkiStore, fmt: str, name: str) -> None:
    with pytest.raises(UnsafeValue):
        build(fmt, inp_for(cfg, store, identity=name), Path("/x/out"))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", HOSTILE_REFUSED, ids=repr)
def test_json_keeps_control_characters_inert(cfg: Config, store: PkiStore, name: str) -> None:
    assert _sswan(sswan.build(inp_for(cfg, store, identity=name))[0].data)["local"]["eap_id"] == name


# ----------------------------------------------------------------------------- the command

HOSTILE_CLI = ["a'b", 'a"b', "a<b>&", "$(x)", "a;b", "a\nb", "ä@123456", "x" * 10_000]


@pytest.mark.parametrize("fmt", ["mobileconfig", "sswan", "powershell", "swanctl", "networkmanager"])
def test_cli_profile_per_format(cli_env: tuple[CliRunner, Path], tmp_path: Path, fmt: str) -> None:
    runner, p = cli_env
    out = tmp_path / f"out.{fmt}"
    r = runner.invoke(app, ["profile", "-c", str(p), "--user", "alice@123456", "--format", fmt,
                            "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    written = json.loads(r.output)["data"]["files"]
    assert written and all(Path(w).exists() for w in written)
    for user in HOSTILE_CLI:
        bad = tmp_path / f"bad.{fmt}"
        r = runner.invoke(app, ["profile", "-c", str(p), "--user", user, "--format", fmt, "--out", str(bad)])
        assert r.exit_code == 2, (user[:20], r.output)
        assert len(r.output.strip().splitlines()) == 1 and not bad.exists()


def test_cli_certificate_profile(cli_env: tuple[CliRunner, Path], tmp_path: Path) -> None:
    runner, p = cli_env
    pw = tmp_path / "p12pw"
    r = runner.invoke(app, ["pki", "issue-client", "-c", str(p), "--user", "alice@123456",
                            "--p12-password-file", str(pw)])
    assert r.exit_code == 0, r.output
    p12 = tmp_path / "pki" / "p12" / "alice@123456-legacy.p12"
    out = tmp_path / "sw"
    r = runner.invoke(app, ["profile", "-c", str(p), "--user", "alice@123456", "--format", "swanctl",
                            "--cert", str(p12), "--p12-password-file", str(pw), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE((out / "private" / "alice@123456.pem").stat().st_mode) == 0o600
    # someone else's bundle is refused
    r = runner.invoke(app, ["profile", "-c", str(p), "--user", "bob@123456", "--format", "swanctl",
                            "--cert", str(p12), "--p12-password-file", str(pw), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "not issued to bob@123456" in r.output
    assert PASSWORD  # the fixture password is unrelated to the CLI's generated one


def test_cli_unexpressible_is_exit_2(tmp_path: Path) -> None:
    d = config_dict(tmp_path, strongswan={"proposals": ["aes256-sha256-x25519"]})
    p = tmp_path / "c.yaml"
    p.write_text(json.dumps(d))
    runner = CliRunner()
    assert runner.invoke(app, ["pki", "init", "-c", str(p)]).exit_code == 0
    r = runner.invoke(app, ["profile", "-c", str(p), "--user", "alice@123456", "--format", "powershell",
                            "--out", str(tmp_path / "w.ps1")])
    assert r.exit_code == 2 and "cannot be expressed in powershell" in r.output


@pytest.mark.parametrize(("content", "ok"), [(b'pa"ss\\w\n', True), (b"\xff\xfe\n", False),
                                             (b"pa\x01ss\n", False)])
def test_cli_password_file(cli_env: tuple[CliRunner, Path], tmp_path: Path, content: bytes, ok: bool) -> None:
    runner, p = cli_env
    pw = tmp_path / "pw"
    pw.write_bytes(content)
    out = tmp_path / "sw"
    r = runner.invoke(app, ["profile", "-c", str(p), "--user", "alice@123456", "--format", "swanctl",
                            "--password-file", str(pw), "--out", str(out)])
    if ok:
        assert r.exit_code == 0, r.output
        conf = (out / "swanctl.conf").read_text()
        assert 'secret = "pa\\"ss\\\\w"' in conf and stat.S_IMODE((out / "swanctl.conf").stat().st_mode) == 0o600
        assert 'pa"ss' not in r.output
    else:
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert not out.exists()


def test_default_keyword_alone(tmp_path: Path, store: PkiStore) -> None:
    """A server with only "default" still gets profiles: the expansion charon 5.9.8 logs."""
    cfg = make_config(tmp_path, strongswan={"proposals": ["default"], "esp_proposals": ["default"]})
    ike = _vpn_payload(apple.build(inp_for(cfg, store))[0].data)["IKEv2"]
    assert ike["IKESecurityAssociationParameters"]["EncryptionAlgorithm"] == "AES-128"
    assert ike["IKESecurityAssociationParameters"]["DiffieHellmanGroup"] == 31
    assert ike["EnablePFS"] is False  # charon's default ESP proposals carry no DH group
    assert windows.ipsec_parameters(inp_for(cfg, store))["DHGroup"] == "ECP256"
    doc = _sswan(sswan.build(inp_for(cfg, store))[0].data)
    assert "ike-proposal" not in doc and "esp-proposal" not in doc  # the app's defaults = charon's
