"""RADIUS accounting from strongSwan itself: the campus keeps a login history with the VIP.

The lab's config enables `radius.accounting`, so charon's eap-radius plugin sends
Accounting-Request Start/Stop for every IKE_SA to the rendered FreeRADIUS, whose
`detail` module writes them under radacct/.
"""

from __future__ import annotations

from helpers import until
from ikemgr_lab.runner import Lab


def _records(lab: Lab) -> list[str]:
    root = lab.state / "radius" / "state" / "log" / "radacct"
    text = "".join(p.read_text(errors="replace") for p in sorted(root.rglob("detail*")) if p.is_file())
    return [r for r in text.split("\n\n") if r.strip()]


def _record(lab: Lab, needles: tuple[str, ...]) -> str | None:
    return next((rec for rec in _records(lab) if all(n in rec for n in needles)), None)


def _wait_record(lab: Lab, *needles: str, timeout: float = 10.0) -> str | None:
    until(lambda: _record(lab, needles), timeout, 0.1)
    return _record(lab, needles)


def test_charon_accounts_logins_and_logouts_with_the_vip(lab: Lab) -> None:
    assert lab.cfg.radius.accounting
    carol = lab.lab.client("carol")
    vip = lab.vip(carol)
    assert vip is not None
    start = _wait_record(lab, "Acct-Status-Type = Start", 'User-Name = "carol"', f"Framed-IP-Address = {vip}")
    assert start is not None, _records(lab)[-3:]
    r = lab.disconnect(carol)
    assert r.returncode == 0, r.stdout
    stop = _wait_record(lab, "Acct-Status-Type = Stop", 'User-Name = "carol"', f"Framed-IP-Address = {vip}")
    assert stop is not None, _records(lab)[-3:]
    r = lab.connect(carol)  # the shared lab goes on with carol connected
    assert r.returncode == 0, r.stdout
    assert lab.vip(carol) is not None
