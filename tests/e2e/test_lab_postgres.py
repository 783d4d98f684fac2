"""The lab with PostgreSQL as the registration database (database.url → postgresql)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ikemgr.config.load import load
from ikemgr.lab import procs
from ikemgr.lab.runner import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.postgres]

IKEMGR = str(Path(sys.executable).parent / "ikemgr")
PG_URL = "postgresql+psycopg://postgres@10.5.0.20:5432/ikemgr"


def test_allow_list_in_postgresql_drives_the_lab_vlan_path(lab_variant) -> None:  # type: ignore[no-untyped-def]
    v = lab_variant()
    text = v.config.read_text()
    v.config.write_text(text.replace(f"sqlite:///{v.state}/ikemgr.db", PG_URL))
    lab = Lab(load(v.config), v.config)
    assert lab.cfg.database.url == PG_URL
    try:
        out = lab.up(lambda _line: None)
        assert "PostgreSQL on 10.5.0.20" in next(p["detail"] for p in out["phases"]
                                                 if p["phase"] == "registration db")
        # the grants are in PostgreSQL, read back by the gateway's own ikemgr
        r = subprocess.run(["ip", "netns", "exec", lab.ns("gw"), IKEMGR, "grant", "list", "-c", str(v.config),
                            "--json"], capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        listed = json.dumps(json.loads(r.stdout)["data"])
        assert "alice" in listed and "123456" in listed and "erin" in listed
        rows = {row["client"]: row for row in out["proof"]}
        assert rows["alice"]["lab_host_saw"] == "10.2.0.253"
        assert rows["bob"]["lab_host_saw"] == rows["bob"]["vip"]
        assert lab.expectations(out["proof"]) == []
    finally:
        lab.down()
        assert procs.namespaces(v.prefix) == []
        assert not v.state.exists()
