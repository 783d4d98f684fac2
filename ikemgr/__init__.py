"""ikemgr: one declarative config for a strongSwan IKEv2 campus gateway and its policy routing."""

__version__ = "0.1.0"
