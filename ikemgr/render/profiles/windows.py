"""Windows PowerShell: ``Add-VpnConnection`` + ``Set-VpnConnectionIPsecConfiguration``.

Without the IPsec configuration Windows proposes 3DES/SHA1/modp1024 for IKE and no PFS;
the script sets the SA to what the server renders (``proposals.pick`` with Windows' names).
Windows takes one algorithm of each kind: the first server proposal it can express wins,
CBC+HMAC before AEAD for IKE (the combination strongSwan documents for Windows); a server
with nothing Windows can say is refused (``Unexpressible``, exit 2) instead of writing a
script that cannot connect.

Every interpolated value is a PowerShell single-quoted string: ``'`` (and the typographic
single quotes PowerShell also ends strings with) doubled, control characters refused —
so ``$(...)``, ``;`` and backticks stay literal. Run it as Administrator: it imports the CA
into ``Cert:\\LocalMachine\\Root`` (machine store: IKEv2 checks the server there).
"""

from __future__ import annotations

import base64

from ikemgr.render.profiles.common import ProfileFile, ProfileInput, UnsafeValue, no_controls
from ikemgr.render.profiles.proposals import Picked, pick

ENCRYPTION = {"3des": "DES3", "aes128": "AES128", "aes192": "AES192", "aes256": "AES256",
              "aes128gcm16": "GCMAES128", "aes256gcm16": "GCMAES256"}
INTEGRITY = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256", "sha384": "SHA384"}
DH_GROUPS = {"modp768": "Group1", "modp1024": "Group2", "modp2048": "Group14",
             "ecp256": "ECP256", "ecp384": "ECP384", "modp2048s256": "Group24"}
CIPHER = {"3des": "DES3", "aes128": "AES128", "aes192": "AES192", "aes256": "AES256",
          "aes128gcm16": "GCMAES128", "aes192gcm16": "GCMAES192", "aes256gcm16": "GCMAES256"}
AUTH_TRANSFORM = {"md5": "MD596", "sha1": "SHA196", "sha256": "SHA256128"}
PFS_GROUPS = {"modp768": "PFS1", "modp1024": "PFS2", "modp2048": "PFS2048", "ecp256": "ECP256",
              "ecp384": "ECP384", "modp2048s256": "PFS24"}
_QUOTES = "'\u2018\u2019\u201a\u201b"


def ps(value: str) -> str:
    """A PowerShell single-quoted string literal."""
    no_controls(value, "a PowerShell value")
    if not value.isascii():
        # Windows PowerShell 5.1 reads a BOM-less script as ANSI: non-ASCII would change
        raise UnsafeValue("a PowerShell value must be ASCII")
    return "'" + "".join(c * 2 if c in _QUOTES else c for c in value) + "'"


def ipsec_parameters(inp: ProfileInput) -> dict[str, str]:
    """The six Set-VpnConnectionIPsecConfiguration values (all six are mandatory together)."""
    sp = inp.proposals
    ike_props = sp.expanded("ike")
    try:
        ike = pick(ike_props, encr=ENCRYPTION, integ=INTEGRITY, groups=DH_GROUPS, esp=False,
                   allow_aead=False)
    except ValueError:
        ike = pick(ike_props, encr=ENCRYPTION, integ=INTEGRITY, groups=DH_GROUPS, esp=False)
    esp: Picked = pick(sp.expanded("esp"), encr=CIPHER, integ=AUTH_TRANSFORM, groups=PFS_GROUPS,
                       esp=True)
    assert ike.group is not None and ike.integ is not None
    return {
        "EncryptionMethod": ike.encr,
        "IntegrityCheckMethod": ike.integ,
        "DHGroup": ike.group,
        "CipherTransformConstants": esp.encr,
        # AES-GCM authenticates itself: Windows names the same transform in both places
        "AuthenticationTransformConstants": esp.encr if esp.aead else (esp.integ or "None"),
        "PfsGroup": esp.group or "None",
    }


def comment(value: str) -> str:
    """Text inside a ``#`` comment: a newline there would start a command."""
    return no_controls(value, "a PowerShell comment")


def build(inp: ProfileInput) -> list[ProfileFile]:
    name = inp.display_name
    params = ipsec_parameters(inp)
    ca_b64 = base64.b64encode(inp.ca_der).decode()
    lines = [
        f"# IKEv2 VPN to {comment(inp.fqdn)} for {comment(inp.identity)}: rendered by `ikemgr profile`",
        "# from the gateway's config. Run in an elevated PowerShell (it writes LocalMachine\\Root).",
        "#Requires -RunAsAdministrator",
        "$ErrorActionPreference = 'Stop'",
        f"$Name = {ps(name)}",
        f"$Server = {ps(inp.remote)}",
        f"$CaDer = [Convert]::FromBase64String({ps(ca_b64)})",
        "$CaFile = Join-Path $env:TEMP 'ikemgr-ca.cer'",
        "[IO.File]::WriteAllBytes($CaFile, $CaDer)",
        "Import-Certificate -FilePath $CaFile -CertStoreLocation 'Cert:\\LocalMachine\\Root' | Out-Null",
        "Remove-Item $CaFile",
        "if (Get-VpnConnection -Name $Name -AllUserConnection -ErrorAction SilentlyContinue) {",
        "    Remove-VpnConnection -Name $Name -AllUserConnection -Force",
        "}",
    ]
    split = inp.tunnel == "split"
    add = ["Add-VpnConnection", "-Name", "$Name", "-ServerAddress", "$Server", "-TunnelType", "Ikev2",
           "-EncryptionLevel", "Required", "-AllUserConnection"]
    if inp.auth == "eap":
        lines += [f"# Sign in as {comment(inp.identity)} (EAP-MSCHAPv2, checked by RADIUS).",
                  "$Eap = New-EapConfiguration"]
        add += ["-AuthenticationMethod", "Eap", "-EapConfigXmlStream", "$Eap.EapConfigXmlStream"]
    else:
        if inp.credential is None:
            raise ValueError("a certificate login needs the user's PKCS#12 (--cert)")
        store = "Cert:\\LocalMachine\\My" if inp.auth == "cert" else "Cert:\\CurrentUser\\My"
        lines += [
            f"$P12 = [Convert]::FromBase64String({ps(base64.b64encode(inp.credential.p12).decode())})",
            "$P12File = Join-Path $env:TEMP 'ikemgr-client.p12'",
            "[IO.File]::WriteAllBytes($P12File, $P12)",
            "$Pw = Read-Host -AsSecureString -Prompt "
            + ps("Password of the certificate for " + inp.identity),
            f"Import-PfxCertificate -FilePath $P12File -CertStoreLocation {ps(store)} -Password $Pw"
            " | Out-Null",
            "Remove-Item $P12File",
        ]
        if inp.auth == "cert":
            add += ["-AuthenticationMethod", "MachineCertificate"]
        else:
            lines += ["$Eap = New-EapConfiguration -Tls -UserCertificate"]
            add += ["-AuthenticationMethod", "Eap", "-EapConfigXmlStream", "$Eap.EapConfigXmlStream"]
    if split:
        add += ["-SplitTunneling"]
    lines += [" ".join(add + ["-Force"])]
    setp = ["Set-VpnConnectionIPsecConfiguration", "-ConnectionName", "$Name", "-AllUserConnection"]
    for key, value in params.items():
        setp += [f"-{key}", ps(value)]
    lines += ["# the proposal the gateway renders (strongswan.proposals / esp_proposals)",
              " ".join(setp + ["-PassThru", "-Force", "| Out-Null"])]
    if split:
        for net in inp.remote_ts():
            lines.append(f"Add-VpnConnectionRoute -ConnectionName $Name -AllUserConnection "
                         f"-DestinationPrefix {ps(str(net))} -PassThru | Out-Null")
    lines.append(f"Write-Host {ps('VPN ' + name + ' to ' + inp.remote + ' is set up.')}")
    return [ProfileFile("", ("\r\n".join(lines) + "\r\n").encode(), 0o600 if inp.credential else 0o644)]
