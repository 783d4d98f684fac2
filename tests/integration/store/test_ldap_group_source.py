"""`kind: ldap_group` through `ikemgr sync` against a real slapd that only talks TLS.

slapd has a certificate from a test CA (subjectAltName IP 127.0.0.1), listens on ldap://
(StartTLS) and ldaps://, and refuses every operation without TLS (``olcSecurity: tls=1``),
so a sync that works proves the source used TLS. The directory check (account_check)
connects through the same helper and is checked here with the same certificates.

A test schema adds one attribute with octet-string syntax (``labAccount``): the stock
attributes are all UTF-8/IA5-checked by slapd, and the source must also cope with a
directory that holds raw bytes.

The membership round trip and "slapd stopped" run the installed CLI; the other cases call
the command's body in-process (``sync_body``: the same config load, sources, store and
account check, without a second of interpreter start-up per call).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from ldap_groups import (
    GROUPS,
    HOSTILE_UIDS,
    LAB_A,
    LAB_B,
    PEOPLE,
    POSIX,
    RAW,
    SUFFIX,
    Directory,
    group_ldif,
    member_change,
    tls_slapd,
)
from store_support import Env, make_env

from ikemgr.allowlist.store import open_store
from ikemgr.commands.sync import sync_body
from ikemgr.config.load import load
from ikemgr.core.identity import shown
from ikemgr.errors import BackendUnavailable
from ikemgr_lab.pki import LabCA
from ikemgr_lab.slapd import LdapUser, ldif_attr


def group_env(tmp: Path, d: Directory, sources: list[dict[str, Any]] | None = None, *,
              tls: str = "start_tls", **sync: Any) -> Env:
    srcs = sources if sources is not None else [
        {"kind": "ldap_group", "name": "labs", "vlans": {"123456": LAB_A, "123457": LAB_B}}]
    env = make_env(tmp, sources=srcs, **sync)
    pw = tmp / "ldap.secret"
    pw.write_text(d.slapd.root_password + "\n")
    uri = d.slapd.uri if tls == "start_tls" else d.slapd.ldaps_uri
    env.write(ldap={"uri": uri, "start_tls": tls == "start_tls", "base_dn": SUFFIX,
                    "bind_dn": d.slapd.root_dn, "bind_password_file": str(pw),
                    "tls_ca_file": str(d.ca), "tls_require_cert": "demand"})
    return env


def identities(env: Env) -> set[str]:
    rc, out = env.json("grant", "list")
    assert rc == 0, out
    return {g["identity"] for g in out["data"]["grants"]}


def stored(env: Env) -> set[str]:
    """The grants in the store, read in-process."""
    store = open_store(load(env.config))
    try:
        return {f"{g.account}@{g.vlan}" for g in store.grants()}
    finally:
        store.close()


def sync(env: Env, *, dry_run: bool = False) -> dict[str, Any]:
    """`ikemgr sync --no-live` in-process: the command's body and its --json data."""
    result = sync_body(load(env.config), dry_run=dry_run, force=False, on_change=None)
    assert result.exit_code == 0, result
    return result.data


def sync_fails(env: Env) -> str:
    """The one-line error `ikemgr sync` would print (exit 3)."""
    with pytest.raises(BackendUnavailable) as err:
        sync_body(load(env.config), dry_run=False, force=False, on_change=None)
    assert err.value.exit_code == 3
    return f"error: {err.value.message}"


def test_groups_become_grants_and_follow_membership(group_directory: Directory, tmp_path: Path) -> None:
    env = group_env(tmp_path, group_directory, max_removal_share=0.5)
    rc, out = env.json("sync")
    assert rc == 0, out
    assert out["data"]["sources"] == {"labs": 6}  # 3 + 3 members, the ghost included
    assert stored(env) == {"alice@123456", "bob@123456", "carol@123456", "alice@123457", "dan@123457"}
    [ghost] = out["data"]["rejected"]
    assert ghost["source"] == "labs"
    assert ghost["where"] == f"group {LAB_B} member 'uid=ghost,{PEOPLE}' (no such entry)"
    data = sync(env)  # nothing changed in the directory: nothing to do
    assert not data["applied"] and data["summary"]["unchanged"] == 5

    group_directory.slapd.ldapmodify(member_change(LAB_A, "delete", group_directory.people["bob"]))
    try:
        rc, out = env.json("sync")
        assert rc == 0, out
        assert [g["identity"] for g in out["data"]["removed"]] == ["bob@123456"]
        assert identities(env) == {"alice@123456", "carol@123456", "alice@123457", "dan@123457"}
    finally:
        group_directory.slapd.ldapmodify(member_change(LAB_A, "add", group_directory.people["bob"]))
    assert [g["identity"] for g in sync(env)["added"]] == ["bob@123456"]
    rc, out = env.json("audit", "--account", "bob")
    assert [e["action"] for e in out["data"]["entries"]] == ["grant.add", "grant.remove", "grant.add"]


def test_member_uid_and_hostile_values_are_reported_never_granted(group_directory: Directory,
                                                                  tmp_path: Path) -> None:
    env = group_env(tmp_path, group_directory, [
        {"kind": "ldap_group", "name": "posix", "vlans": {"200001": POSIX}, "member_attribute": "memberUid"},
        {"kind": "ldap_group", "name": "raw", "vlans": {"200002": RAW}, "account_attribute": "labAccount"},
    ], tls="ldaps")
    data = sync(env)
    assert stored(env) == {"carol@200001", "dan@200002"}
    rejected = {(r["source"], r["where"]): r for r in data["rejected"]}
    assert len(rejected) == len(HOSTILE_UIDS) + 1
    for uid in HOSTILE_UIDS:  # each reported with its group and the (escaped, cut) member value
        r = rejected["posix", f"group {POSIX} memberUid {shown(uid, 120)}"]
        why = "longer than 128 characters" if len(uid) > 128 else "does not match the identity grammar"
        assert r["reason"] == why, r
    bad = rejected["raw", f"group {RAW} member 'cn=rawbad,{PEOPLE}'"]
    assert bad["reason"] == "not valid UTF-8" and "\\xff\\xfe" in bad["value"]
    data = sync(env)  # still rejected, still not granted: nothing to change
    assert data["summary"]["rejected"] == 6 and not data["applied"]


def test_certificate_mismatch_fails_the_sync_and_keeps_grants(group_directory: Directory, tmp_path: Path) -> None:
    env = group_env(tmp_path, group_directory, tls="ldaps")
    sync(env)
    before = stored(env)
    assert len(before) == 5
    group_directory.slapd.ldapmodify(member_change(LAB_A, "delete", group_directory.people["bob"]))
    try:
        env.doc["ldap"]["tls_ca_file"] = str(group_directory.other_ca)  # a CA that did not sign slapd
        env.write()
        p = env.run("sync")  # once through the CLI: exit code and the one error line
        assert p.returncode == 3, p.stderr
        assert p.stderr.startswith(f"error: ldap unavailable: {group_directory.slapd.ldaps_uri}: TLS: the server "
                                   "certificate is not trusted"), p.stderr
        assert "nothing changed, the store keeps the last good list" in p.stderr
        env.doc["ldap"]["tls_ca_file"] = str(group_directory.ca)
        env.doc["ldap"]["uri"] = group_directory.slapd.ldaps_uri.replace("127.0.0.1", "localhost")
        env.write()  # right CA, but the certificate does not name "localhost"
        assert "TLS: the server certificate does not name this host" in sync_fails(env)
        env.doc["ldap"].update(uri=group_directory.slapd.uri, start_tls=True, tls_ca_file=str(group_directory.other_ca))
        env.write()  # StartTLS: the same check
        assert "certificate is not trusted" in sync_fails(env)
        assert stored(env) == before  # bob's removal was never applied
        env.doc["ldap"]["tls_require_cert"] = "never"  # the trade-off: no check, the sync goes through
        env.write()
        assert [g["identity"] for g in sync(env, dry_run=True)["removed"]] == ["bob@123456"]
    finally:
        group_directory.slapd.ldapmodify(member_change(LAB_A, "add", group_directory.people["bob"]))


def test_plain_ldap_is_refused_by_the_directory(group_directory: Directory, tmp_path: Path) -> None:
    """The control for the TLS tests: this slapd answers nothing without TLS."""
    env = group_env(tmp_path, group_directory)
    env.doc["ldap"]["start_tls"] = False
    env.write()
    assert "bind failed: confidentialityRequired" in sync_fails(env)


def test_account_check_uses_the_same_tls_settings(group_directory: Directory, tmp_path: Path) -> None:
    env = group_env(tmp_path, group_directory, tls="ldaps", account_check={"enabled": True, "base_dn": PEOPLE})
    acc = sync(env, dry_run=True)["accounts"]
    assert acc["missing"] == [] and acc["disabled"] == [] and acc["checked"] == 4
    extra = f"cn=lab-123458,{GROUPS}"
    env.doc["sync"]["sources"][0]["vlans"]["123458"] = extra
    env.write()
    group_directory.slapd.ldapadd(group_ldif(extra, [group_directory.people["erin"]]))
    try:
        assert sync(env, dry_run=True)["accounts"]["disabled"] == ["erin"]  # shadowExpire: 1
    finally:
        group_directory.slapd.ldapmodify(f"{ldif_attr('dn', extra)}\nchangetype: delete\n")
    env.doc["sync"]["sources"] = [{"kind": "file", "name": "userlist", "path": str(env.list_file)}]
    env.list_file.write_text("alice@123456\n")
    env.doc["ldap"]["tls_ca_file"] = str(group_directory.other_ca)
    env.write()
    err = sync_fails(env)  # no group source now: the failure is the account check's own
    assert err.startswith("error: ldap unavailable:") and "certificate is not trusted" in err, err
    assert "nothing changed" in err
    assert stored(env) == set()


@pytest.mark.parametrize("case", ["missing_group", "bind_refused", "timeout"])
def test_directory_failures_fail_the_sync_and_keep_grants(group_directory: Directory, tmp_path: Path,
                                                          case: str) -> None:
    env = group_env(tmp_path, group_directory)
    sync(env)
    before = stored(env)
    expect = {"missing_group": f"source labs: group cn=lab-999999,{GROUPS} does not exist",
              "bind_refused": "bind failed: invalidCredentials",
              "timeout": "timed out"}[case]
    silent: socket.socket | None = None
    if case == "missing_group":
        env.doc["sync"]["sources"][0]["vlans"]["999999"] = f"cn=lab-999999,{GROUPS}"
    elif case == "bind_refused":
        (tmp_path / "ldap.secret").write_text("not-the-password\n")
    else:  # a server that accepts the connection and never says a word
        silent = socket.create_server(("127.0.0.1", 0))
        env.doc["ldap"].update(uri=f"ldap://127.0.0.1:{silent.getsockname()[1]}", start_tls=False)
        env.doc["sync"]["sources"][0]["timeout"] = 1
    try:
        env.write()
        err = sync_fails(env)
    finally:
        if silent is not None:
            silent.close()
    assert err.startswith("error: ldap unavailable:") and expect in err, err
    assert err.endswith("nothing changed, the store keeps the last good list")
    assert stored(env) == before


def test_slapd_stopped_sync_fails_and_grants_are_kept(tmp_path: Path) -> None:
    if not Path("/usr/sbin/slapd").exists():
        pytest.skip("slapd is not installed (scripts/setup.sh)")
    ca = LabCA(tmp_path / "ca", "Example University")
    ca.create()
    inst = tls_slapd(tmp_path, ca)
    inst.start()
    try:
        inst.add_ou("people")
        inst.add_ou("groups")
        dns = inst.add_users([LdapUser("alice", "pw"), LdapUser("bob", "pw")], under=PEOPLE)
        inst.ldapadd(group_ldif(LAB_A, dns))
        env = group_env(tmp_path, Directory(inst, ca.cert, ca.cert, {}),
                        [{"kind": "ldap_group", "name": "labs", "vlans": {"123456": LAB_A}}])
        assert env.run("sync").returncode == 0
        assert identities(env) == {"alice@123456", "bob@123456"}
        inst.stop()
        p = env.run("sync")
        assert p.returncode == 3 and p.stderr.startswith("error: ldap unavailable:"), p.stderr
        assert "nothing changed" in p.stderr
        assert identities(env) == {"alice@123456", "bob@123456"}
    finally:
        inst.stop()
