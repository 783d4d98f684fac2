"""Helpers for the PKI and profile unit tests (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ikemgr.config.schema import Config
from ikemgr.pki.names import client_cn, client_subject_rdns, user_identity
from ikemgr.pki.store import Issued, PkiStore

PASSWORD = b"correct horse battery"


def config_dict(tmp: Path, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "gateway": {"fqdn": "vpn.example.ac.jp",
                    "outside": {"interface": "eth0", "address": "192.0.2.10/24", "gateway": "192.0.2.1"},
                    "campus": {"interface": "eth1", "address": "10.8.0.1/24", "gateway": "10.8.0.254"}},
        "pool": {"first": "10.8.0.100", "last": "10.8.0.199", "dns": ["10.8.0.53"]},
        "campus_prefixes": ["10.0.0.0/8", "172.16.0.0/12"],
        "radius": {"secret_file": str(tmp / "radius.secret")},
        "eap": {"methods": ["mschapv2", "tls"], "tls_allowed_subject": "C=JP, O=Example University"},
        "pki": {"dir": str(tmp / "pki"), "organisation": "Example University", "country": "JP"},
    }
    for k, v in over.items():
        d[k] = v
    return d


def make_config(tmp: Path, **over: Any) -> Config:
    return Config.model_validate(config_dict(tmp, **over))



def issue_client(cfg: Config, store: PkiStore, user: str = "alice@123456") -> Issued:
    ident = user_identity(cfg, user)
    return store.issue_client(str(ident), client_cn(cfg, ident), client_subject_rdns(cfg), PASSWORD,
                              ("legacy", "modern"))
