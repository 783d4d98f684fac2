"""Client profiles for every OS, each derived from the gateway's own ``Config``.

``build(fmt, inp, out)`` returns the files of one profile (relative paths, bytes, modes):

- ``mobileconfig`` (apple.py): macOS/iOS configuration profile, plistlib
- ``sswan`` (sswan.py): strongSwan for Android JSON profile
- ``powershell`` (windows.py): Add-VpnConnection + Set-VpnConnectionIPsecConfiguration
- ``swanctl`` (swanctl.py): a directory laid out like /etc/swanctl (a contract: see there)
- ``networkmanager`` (networkmanager.py): a network-manager-strongswan keyfile + its files

The server's proposals come from ``proposals.server_proposals`` in every format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ikemgr.render.profiles import apple, networkmanager, sswan, swanctl, windows
from ikemgr.render.profiles.common import ProfileFile, ProfileInput

Format = Literal["mobileconfig", "sswan", "powershell", "swanctl", "networkmanager"]
FORMATS: tuple[Format, ...] = ("mobileconfig", "sswan", "powershell", "swanctl", "networkmanager")
SUFFIX = {"mobileconfig": ".mobileconfig", "sswan": ".sswan", "powershell": ".ps1", "swanctl": "",
          "networkmanager": ".nmconnection"}


def build(fmt: Format, inp: ProfileInput, out: Path) -> list[ProfileFile]:
    if fmt == "mobileconfig":
        return apple.build(inp)
    if fmt == "sswan":
        return sswan.build(inp)
    if fmt == "powershell":
        return windows.build(inp)
    if fmt == "swanctl":
        return swanctl.build(inp)
    stem = str(out.parent.resolve() / out.stem) if out.suffix else str(out.resolve())
    return networkmanager.build(inp, stem)
