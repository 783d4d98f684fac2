"""Accounting enabled by config: FreeRADIUS keeps the login history (user, VIP) in detail files."""

from __future__ import annotations

import pytest
from pyrad import packet
from pyrad.client import Client
from radius_support import SECRET, RadiusEnv

from ikemgr.adapters.radius import dictionary

pytestmark = pytest.mark.root


def test_accounting_start_and_stop_are_recorded(radius_env: RadiusEnv) -> None:
    client = Client(server="127.0.0.1", acctport=radius_env.cfg.radius.acct_port, secret=SECRET.encode(),
                    dict=dictionary(), retries=1, timeout=3)
    for status in (1, 2):  # Start, Stop
        pkt = client.CreateAcctPacket(code=packet.AccountingRequest)
        pkt["User-Name"] = "alice@123456"
        pkt["Acct-Status-Type"] = status
        pkt["Acct-Session-Id"] = "ikt-r-session-1"
        pkt["Framed-IP-Address"] = "10.1.0.10"
        pkt["NAS-Identifier"] = "ikemgr"
        reply = client.SendPacket(pkt)
        assert reply.code == packet.AccountingResponse
    details = sorted((radius_env.raddb.parent / "state" / "log" / "radacct" / "127.0.0.1").glob("detail-*"))
    assert details, "no detail file written"
    text = details[-1].read_text()
    assert text.count('User-Name = "alice@123456"') == 2
    assert "Framed-IP-Address = 10.1.0.10" in text
    assert "Acct-Status-Type = Start" in text and "Acct-Status-Type = Stop" in text
