"""`ikemgr sync` with a list-file source into a real SQLite store, through the installed CLI."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from store_support import IKEMGR, Env, make_env

LIST = "alice@123456\nbob@123456\ncarol@123457\n"


def identities(env: Env) -> set[str]:
    rc, out = env.json("grant", "list")
    assert rc == 0, out
    return {g["identity"] for g in out["data"]["grants"]}


def test_first_sync_adds_then_second_is_a_no_op(env: Env) -> None:
    env.list_file.write_text("# lab registrations\n" + LIST)
    rc, out = env.json("sync")
    assert rc == 0, out
    d = out["data"]
    assert d["applied"] and d["summary"]["added"] == 3 and d["sources"] == {"userlist": 3}
    assert d["per_vlan"] == {"123456": {"added": 2, "removed": 0, "expired": 0, "updated": 0},
                             "123457": {"added": 1, "removed": 0, "expired": 0, "updated": 0}}
    assert identities(env) == {"alice@123456", "bob@123456", "carol@123457"}
    rc, out = env.json("sync")
    assert rc == 0 and not out["data"]["applied"] and out["data"]["summary"]["unchanged"] == 3
    rc, out = env.json("audit")
    entries = out["data"]["entries"]
    assert [e["action"] for e in entries] == ["grant.add"] * 3
    assert {e["actor"] for e in entries} == {f"sync@{socket.gethostname()}"}
    assert {e["source"] for e in entries} == {"userlist"}


def test_sqlite_file_and_parent_dir_are_created(env: Env) -> None:
    env.list_file.write_text(LIST)
    assert not (env.tmp / "db").exists()
    assert env.run("sync").returncode == 0
    assert (env.tmp / "db" / "ikemgr.db").stat().st_size > 0


def test_dry_run_prints_the_plan_and_changes_nothing(env: Env) -> None:
    env.list_file.write_text(LIST)
    p = env.run("sync", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "dry run" in p.stdout and "+3 added" in p.stdout and "plan per VLAN" in p.stdout
    assert identities(env) == set()
    rc, out = env.json("audit")
    assert out["data"]["count"] == 0


def test_removal_and_addition_are_reported_per_vlan(env: Env) -> None:
    env.list_file.write_text("".join(f"u{i}@123456\n" for i in range(10)))
    assert env.run("sync").returncode == 0
    env.list_file.write_text("".join(f"u{i}@123456\n" for i in range(2, 10)) + "new@200001\n")
    rc, out = env.json("sync")
    assert rc == 0, out
    assert {g["identity"] for g in out["data"]["removed"]} == {"u0@123456", "u1@123456"}
    assert [g["identity"] for g in out["data"]["added"]] == ["new@200001"]
    assert out["data"]["removal_share"] == 0.2
    rc, out = env.json("audit", "--action", "grant.remove")
    assert {e["account"] for e in out["data"]["entries"]} == {"u0", "u1"}


def test_hostile_lines_are_reported_with_line_numbers_and_never_stored(env: Env) -> None:
    hostile = [b"alice@123456; DROP TABLE ikemgr_grants", b"' OR 1=1 --@123456", b".*@123456",
               b"a+b@123456", b"x" * 300 + b"@123456", b"\xff\xfe@123456", b"al\x00ice@123456",
               b"$(reboot)@123456", b"bob@0123456", b"bob@123456@1"]
    env.list_file.write_bytes(b"ok@123456\n" + b"\n".join(hostile) + b"\n")
    rc, out = env.json("sync")
    assert rc == 0, out
    d = out["data"]
    assert d["summary"]["added"] == 1 and d["summary"]["rejected"] == len(hostile)
    assert [r["where"] for r in d["rejected"]] == [f"line {n}" for n in range(2, 2 + len(hostile))]
    assert all(r["source"] == "userlist" for r in d["rejected"])
    assert identities(env) == {"ok@123456"}
    p = env.run("sync", "--dry-run")
    assert "rejected entries" in p.stdout and "line 7" in p.stdout and "UTF-8" in p.stdout


def test_truncated_file_keeps_the_last_good_list(env: Env) -> None:
    env.list_file.write_text(LIST)
    assert env.run("sync").returncode == 0
    for broken in (b"alice@123456\nbob@12", b"", b"alice@123456"):
        env.list_file.write_bytes(broken)
        p = env.run("sync", "--force")
        assert p.returncode == 3, (broken, p.stdout, p.stderr)
        assert "source userlist unavailable" in p.stderr and "nothing changed" in p.stderr
        assert identities(env) == {"alice@123456", "bob@123456", "carol@123457"}


def test_end_marker_rule(tmp_path: Path) -> None:
    env = make_env(tmp_path, sources=[{"kind": "file", "name": "userlist", "path": str(tmp_path / "userlist"),
                                       "end_marker": "#END"}])
    env.list_file.write_text(LIST + "#END\n")
    assert env.run("sync").returncode == 0
    env.list_file.write_text("alice@123456\n")  # cut before the marker, still ends with a newline
    p = env.run("sync", "--force")
    assert p.returncode == 3 and "marker" in p.stderr
    assert len(identities(env)) == 3


def test_missing_file_is_unavailable_not_empty(env: Env) -> None:
    env.list_file.write_text(LIST)
    assert env.run("sync").returncode == 0
    env.list_file.unlink()
    p = env.run("sync", "--force")
    assert p.returncode == 3 and "No such file" in p.stderr
    assert len(identities(env)) == 3


def test_mass_revocation_valve(env: Env) -> None:
    env.list_file.write_text("".join(f"u{i}@123456\n" for i in range(10)))
    assert env.run("sync").returncode == 0
    env.list_file.write_text("".join(f"u{i}@123456\n" for i in range(3, 10)))
    rc, out = env.json("sync")
    assert rc == 4 and out["error"]["code"] == "refused"
    assert "remove 3 of 10 grants (30% > 20%)" in out["error"]["message"]
    assert len(identities(env)) == 10
    rc, out = env.json("sync", "--dry-run")  # the plan can still be inspected
    assert rc == 0 and out["data"]["summary"]["removed"] == 3
    rc, out = env.json("sync", "--force")
    assert rc == 0 and out["data"]["summary"]["removed"] == 3
    assert len(identities(env)) == 7


def test_configured_share(tmp_path: Path) -> None:
    env = make_env(tmp_path, max_removal_share=0.5)
    env.list_file.write_text("".join(f"u{i}@123456\n" for i in range(10)))
    assert env.run("sync").returncode == 0
    env.list_file.write_text("".join(f"u{i}@123456\n" for i in range(5, 10)))
    assert env.run("sync").returncode == 0
    env.list_file.write_text("u9@123456\n")
    assert env.run("sync").returncode == 4


def test_concurrent_sync_waits_for_the_lock_then_gives_up(env: Env) -> None:
    env.list_file.write_text(LIST)
    lock = env.tmp / "sync.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        p = env.run("sync")
        assert p.returncode == 4 and "another sync holds" in p.stderr
        assert time.monotonic() - t0 >= 1.0  # waited lock_timeout
        assert identities(env) == set()
    finally:
        os.close(fd)
    assert env.run("sync").returncode == 0
    assert len(identities(env)) == 3


def test_parallel_syncs_are_serialised(env: Env) -> None:
    """Three syncs on a brand-new database at once: one migrates and applies, two find nothing."""
    env.list_file.write_text("".join(f"u{i}@123456\n" for i in range(2000)))
    env.doc["sync"]["lock_timeout"] = 60
    env.write()
    procs = [subprocess.Popen([str(IKEMGR), "sync", "--no-live", "--json", "--config", str(env.config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    added = sorted(json.loads(out)["data"]["summary"]["added"] for out, _ in results)
    assert added == [0, 0, 2000]
    rc, out = env.json("audit", "--limit", "100000")
    assert out["data"]["count"] == 2000


def test_manual_grants_survive_sync_and_are_audited(env: Env) -> None:
    env.list_file.write_text(LIST)
    assert env.run("sync").returncode == 0
    rc, out = env.json("grant", "add", "dave@200001", "--until", "2099-01-01T00:00:00Z", "--note", "visitor")
    assert rc == 0 and out["data"]["result"] == "added"
    assert out["data"]["grant"]["valid_until"] == "2099-01-01T00:00:00+00:00"
    rc, out = env.json("grant", "add", "dave@200001", "--until", "2099-01-01T00:00:00Z", "--note", "visitor")
    assert out["data"]["result"] == "unchanged"
    env.list_file.write_text("alice@123456\nbob@123456\ncarol@123457\n")
    rc, out = env.json("sync")
    assert rc == 0 and out["data"]["summary"]["removed"] == 0
    assert "dave@200001" in identities(env)
    rc, out = env.json("grant", "remove", "dave@200001")
    assert rc == 0 and out["data"]["removed"]["note"] == "visitor"
    rc, out = env.json("grant", "remove", "dave@200001")
    assert rc == 2 and "no grant dave@200001" in out["error"]["message"]
    rc, out = env.json("audit", "--account", "dave")
    assert [e["action"] for e in out["data"]["entries"]] == ["grant.remove", "grant.add"]
    assert out["data"]["entries"][0]["before"]["valid_until"] == "2099-01-01T00:00:00+00:00"


def test_grant_commands_reject_bad_input_with_one_line(env: Env) -> None:
    for args, needle in ((("grant", "add", ".*@123456"), "rejected"),
                         (("grant", "add", "alice@999"), "VLAN 999 is not configured"),
                         (("grant", "add", "alice@123456", "--until", "soon"), "--until"),
                         (("grant", "add", "alice@123456", "--from", "2030-01-01", "--until", "2029-01-01"),
                          "after --from"),
                         (("grant", "list", "--account", "a;b"), "rejected"),
                         (("audit", "--account", "alice@1"), "without @VLAN")):
        p = env.run(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert identities(env) == set()


def test_vlan_list_and_show(env: Env) -> None:
    env.list_file.write_text(LIST)
    assert env.run("sync").returncode == 0
    assert env.run("grant", "add", "eve@777777", "--allow-unknown-vlan").returncode == 0
    rc, out = env.json("vlan", "list")
    assert rc == 0
    rows = {r["number"]: r for r in out["data"]["vlans"]}
    assert set(rows) == {123456, 123457, 200001, 777777}
    assert rows[123456]["name"] == "Laboratory A" and rows[123456]["grants"] == 2
    assert rows[123456]["table"] == "gw123456" and rows[123456]["snat"] == "10.2.0.253"
    assert rows[777777]["configured"] is False and rows[777777]["active"] == 1
    rc, out = env.json("vlan", "show", "123457")
    assert rc == 0 and [g["identity"] for g in out["data"]["grants"]] == ["carol@123457"]
    assert out["data"]["table_name"] == "gw123457"
    p = env.run("vlan", "show", "4242")
    assert p.returncode == 2 and "neither configured" in p.stderr


def test_expired_grant_stops_counting_without_a_sync_and_sync_reports_it(env: Env) -> None:
    env.list_file.write_text("alice@123456\n")
    assert env.run("sync").returncode == 0
    end = datetime.now(UTC) + timedelta(seconds=10)  # four CLI runs must fit before it ends, also on a busy machine
    assert env.run("grant", "add", "tmp@123456", "--until", end.isoformat()).returncode == 0
    env.doc["sync"]["sources"].append({"kind": "sql", "name": "regdb", "url": f"sqlite:///{env.tmp}/reg.db",
                                       "query": "SELECT account, vlan, valid_until FROM reg"})
    env.write()
    reg = sqlite3.connect(env.tmp / "reg.db")
    reg.execute("CREATE TABLE reg (account TEXT, vlan INTEGER, valid_until TEXT)")
    reg.execute("INSERT INTO reg VALUES ('bob', 123457, ?)", (end.isoformat(),))
    reg.commit()
    reg.close()
    assert env.run("sync").returncode == 0
    rc, out = env.json("grant", "list", "--active")
    assert [g["identity"] for g in out["data"]["grants"]] == ["alice@123456", "tmp@123456", "bob@123457"]
    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 0.2)
    rc, out = env.json("grant", "list", "--active")  # no sync ran: expiry is decided at read time
    assert [g["identity"] for g in out["data"]["grants"]] == ["alice@123456"]
    rc, out = env.json("grant", "list")
    assert {g["identity"]: g["active"] for g in out["data"]["grants"]} == {
        "alice@123456": True, "tmp@123456": False, "bob@123457": False}
    rc, out = env.json("sync")  # the source still lists bob with the past end date
    assert rc == 0 and [g["identity"] for g in out["data"]["expired"]] == ["bob@123457"]
    assert out["data"]["summary"]["removed"] == 0 and out["data"]["removal_share"] == 0
    rc, out = env.json("audit", "--action", "grant.expire")
    assert [(e["account"], e["source"]) for e in out["data"]["entries"]] == [("bob", "regdb")]


def test_config_without_sources_is_a_usage_error(tmp_path: Path) -> None:
    env = make_env(tmp_path, sources=[])
    p = env.run("sync")
    assert p.returncode == 2 and "no sync.sources" in p.stderr


def test_vlan_set_records_owner_and_contact_with_audit(env: Env) -> None:
    rc, out = env.json("vlan", "set", "123456", "--owner", "Prof. Sato", "--contact", "sato@example.ac.jp")
    assert rc == 0 and out["data"]["owner"] == "Prof. Sato" and out["data"]["name"] == ""
    rc, out = env.json("vlan", "show", "123456")
    assert (out["data"]["owner"], out["data"]["contact"]) == ("Prof. Sato", "sato@example.ac.jp")
    assert out["data"]["name"] == "Laboratory A"  # from the config while the store has none
    rc, out = env.json("audit", "--action", "vlan.update")
    (entry,) = out["data"]["entries"]
    assert entry["vlan"] == 123456 and entry["before"]["owner"] == "" and entry["after"]["owner"] == "Prof. Sato"
    p = env.run("vlan", "set", "123456", "--owner", "x\ny")
    assert p.returncode == 2 and "--owner" in p.stderr
    p = env.run("vlan", "set", "123456")
    assert p.returncode == 2 and "at least one" in p.stderr


def test_sqlite_registration_source_is_opened_read_only(tmp_path: Path) -> None:
    reg = tmp_path / "reg.db"
    env = make_env(tmp_path, sources=[{"kind": "sql", "name": "regdb", "url": f"sqlite:///{reg}",
                                       "query": "SELECT account, vlan FROM reg"}])
    p = env.run("sync")
    assert p.returncode == 3 and "source regdb unavailable" in p.stderr
    assert not reg.exists()  # a missing source file is an error, not a new empty database
    con = sqlite3.connect(reg)
    con.execute("CREATE TABLE reg (account TEXT, vlan INTEGER)")
    con.execute("INSERT INTO reg VALUES ('alice', 123456)")
    con.commit()
    con.close()
    assert env.run("sync").returncode == 0
    env.doc["sync"]["sources"][0]["query"] = "INSERT INTO reg VALUES ('mallory', 123456) RETURNING account, vlan"
    env.write()
    p = env.run("sync")
    assert p.returncode == 3 and "readonly" in p.stderr.replace("-", "").replace(" ", "")
    assert sqlite3.connect(reg).execute("SELECT count(*) FROM reg").fetchone() == (1,)
