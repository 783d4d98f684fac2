"""The directory check against a real slapd: missing/disabled accounts are suspended, not deleted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ldap3 import MODIFY_REPLACE, Connection
from store_support import (
    LDAP_ADMIN,
    LDAP_PASSWORD,
    LDAP_PEOPLE,
    LDAP_SUFFIX,
    LDAP_USERS,
    Env,
    Slapd,
    make_env,
)

from ikemgr.allowlist.store import open_store
from ikemgr.config.load import load


def ldap_env(tmp: Path, slapd: Slapd, base: str = LDAP_PEOPLE) -> Env:
    env = make_env(tmp, account_check={"enabled": True, "base_dn": base,
                                       "disabled_filter": "(loginShell=/usr/sbin/nologin)"})
    pw = tmp / "ldap.secret"
    pw.write_text(LDAP_PASSWORD + "\n")
    env.write(ldap={"uri": slapd.uri, "base_dn": LDAP_SUFFIX, "bind_dn": LDAP_ADMIN,
                    "bind_password_file": str(pw)})
    env.list_file.write_text("".join(f"{u}@123456\n" for u in LDAP_USERS) + "bob@123456\ncarol@123457\n")
    return env


def test_missing_and_disabled_accounts_are_suspended_then_resumed(posix_directory: Connection, slapd: Slapd,
                                                                  tmp_path: Path) -> None:
    env = ldap_env(tmp_path, slapd)
    rc, out = env.json("sync", "--dry-run")
    assert rc == 0 and out["data"]["accounts"]["to_suspend"] == ["bob", "carol"]
    rc, out = env.json("sync")
    assert rc == 0, out
    acc = out["data"]["accounts"]
    assert (acc["checked"], acc["missing"], acc["disabled"]) == (10, ["carol"], ["bob"])
    assert sorted(g["identity"] for g in acc["suspended"]) == ["bob@123456", "carol@123457"]
    store = open_store(load(env.config))
    try:
        pairs = store.active_pairs(datetime.now(UTC))
        assert ("bob", 123456) not in pairs and ("carol", 123457) not in pairs
        assert {("user0", 123456), ("user7", 123456)} <= pairs
        kept = {g.account: g.suspended for g in store.grants()}
        assert kept["bob"] is True and kept["carol"] is True and kept["user0"] is False  # not deleted
    finally:
        store.close()
    rc, out = env.json("sync")  # nothing changed: nothing re-suspended, nothing audited twice
    assert rc == 0 and out["data"]["accounts"]["suspended"] == [] and not out["data"]["applied"]
    assert posix_directory.modify(f"uid=bob,{LDAP_PEOPLE}", {"loginShell": [(MODIFY_REPLACE, ["/bin/bash"])]})
    try:
        rc, out = env.json("sync")
        assert rc == 0 and [g["identity"] for g in out["data"]["accounts"]["resumed"]] == ["bob@123456"]
    finally:
        posix_directory.modify(f"uid=bob,{LDAP_PEOPLE}", {"loginShell": [(MODIFY_REPLACE, ["/usr/sbin/nologin"])]})
    rc, out = env.json("audit", "--account", "bob")
    assert [e["action"] for e in out["data"]["entries"]] == ["grant.resume", "grant.suspend", "grant.add"]


def test_directory_down_changes_nothing(posix_directory: Connection, slapd: Slapd, tmp_path: Path) -> None:
    env = ldap_env(tmp_path, slapd)
    assert env.run("sync").returncode == 0
    env.doc["ldap"]["uri"] = "ldap://127.0.0.1:9"  # nothing listens on the discard port
    env.list_file.write_text(env.list_file.read_text() + "user9@123456\n")
    env.write()
    p = env.run("sync")
    assert p.returncode == 3 and p.stderr.startswith("error: ldap unavailable:") and "nothing changed" in p.stderr
    rc, out = env.json("grant", "list")
    assert "user9@123456" not in {g["identity"] for g in out["data"]["grants"]}


def test_wrong_base_dn_would_suspend_everyone_and_is_refused(posix_directory: Connection, slapd: Slapd,
                                                             tmp_path: Path) -> None:
    env = ldap_env(tmp_path, slapd)
    assert env.run("sync").returncode == 0
    env.doc["sync"]["account_check"]["base_dn"] = f"ou=nobody,{LDAP_SUFFIX}"
    env.write()
    p = env.run("sync")
    assert p.returncode == 4 and "would suspend 8 of 10 accounts" in p.stderr
    rc, out = env.json("grant", "list", "--active")
    assert out["data"]["count"] == 8


def test_default_disabled_filter_is_the_one_radius_uses(posix_directory: Connection, slapd: Slapd,
                                                        tmp_path: Path) -> None:
    dn = f"uid=eve,{LDAP_PEOPLE}"
    assert posix_directory.add(dn, ["inetOrgPerson", "posixAccount", "shadowAccount"], {
        "cn": "eve", "sn": "eve", "uid": "eve", "uidNumber": 20000, "gidNumber": 10000,
        "homeDirectory": "/home/eve", "shadowExpire": 1}), posix_directory.result  # `usermod -e 1`
    try:
        env = ldap_env(tmp_path, slapd)
        del env.doc["sync"]["account_check"]["disabled_filter"]  # → ldap.disabled_filter (shadowExpire=1)
        env.write()
        env.list_file.write_text("".join(f"{u}@123456\n" for u in LDAP_USERS) + "eve@123456\nbob@123456\n")
        rc, out = env.json("sync")
        assert rc == 0, out
        assert out["data"]["accounts"]["disabled"] == ["eve"]  # bob's nologin shell is not this filter
    finally:
        posix_directory.delete(dn)
