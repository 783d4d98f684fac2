"""Fixtures for the lab's unit tests: the default lab document and a real lab CA."""

from __future__ import annotations

import pytest

from ikemgr_lab.model import LabDocument, load_lab
from ikemgr_lab.pki import LabCA
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG


@pytest.fixture(scope="module")
def cfg() -> LabDocument:
    """The lab's default document (lab.yaml)."""
    return load_lab(DEFAULT_LAB_CONFIG)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, cfg: LabDocument) -> LabCA:
    """The lab's CA (strongSwan's pki) with client certificates for erin and frank."""
    ca = LabCA(tmp_path_factory.mktemp("pki"), cfg.lab.organisation)
    ca.create()
    for name in ("erin", "frank"):
        c = cfg.lab.client(name)
        ca.issue(name, c.identity.split("@")[0], [c.identity], ["clientAuth"], organisation=c.organisation)
    return ca
