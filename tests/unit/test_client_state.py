"""ikemgr client's state records: written through fsio's atomic writer, one up/down at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ikemgr.client.state import Record, Store


def _record(name: str) -> Record:
    return Record(name=name, owner_uid=61001, owner_gid=61001, host_netns=4026531840,
                  uplink="169.254.64.0/30", gateway="vpn.example.test", connection="kuins",
                  child="kuins", auth="eap", identity="alice@123456", ipsec="libipsec")


def test_a_record_is_written_whole_and_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "client")
    store.write(_record("ikn-a"))
    store.write(_record("ikn-b"))
    assert store.read("ikn-a") == _record("ikn-a")
    assert store.names() == ["ikn-a", "ikn-b"]
    assert store.path("ikn-a").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in store.dir.iterdir()) == ["ikn-a.json", "ikn-b.json"]  # no temp file left


def test_locked_lets_one_up_or_down_run_at_a_time(tmp_path: Path) -> None:
    store = Store(tmp_path / "client")
    order: list[str] = []

    def second() -> None:
        with store.locked():
            order.append("second")

    with store.locked():
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)  # the second holder has reached the lock and waits
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]
