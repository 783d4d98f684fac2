"""Both policy backends against the real kernel in a fresh namespace: rules, nft map,
real forwarded packets, restart repair, hostile identities."""

from __future__ import annotations

import logging
import os
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from helpers import until
from ikemgr.adapters.policy.rules import spread_priority
from ikemgr.config.load import load
from ikemgr.core.model import Sa, SaUpdate
from ikemgr.engine.engine import Engine
from ikemgr.engine.wiring import build_engine, close_engine

from .conftest import Lab, sh

pytestmark = pytest.mark.root
BACKENDS = ["marks", "rules"]
A, B = IPv4Address("10.1.0.10"), IPv4Address("10.1.0.11")


def prio_of(vip: IPv4Address | str) -> int:
    """The rules backend's priority for a VIP's rules with the lab's routing defaults
    (user_priority 29000, charon's rule at 30000): 29000 + the address modulo 1000."""
    return 29000 + int(IPv4Address(vip)) % 1000


def allow_file(lab: Lab, *lines: str) -> Path:
    f = lab.tmp / "allow.txt"
    f.write_text("\n".join(lines) + "\n")
    return f


def make(lab: Lab, backend: str, *allowed: str) -> Engine:
    cfg = load(lab.config(backend))
    return build_engine(cfg, netns=lab.ns, allow_file=allow_file(lab, *allowed))


def up(uid: str, ident: str | bytes, *vips: IPv4Address) -> SaUpdate:
    return SaUpdate("ike-updown", Sa(uid, ident, tuple(vips), "ESTABLISHED"), True)


def down(uid: str, ident: str | bytes, *vips: IPv4Address) -> SaUpdate:
    return SaUpdate("ike-updown", Sa(uid, ident, tuple(vips), "DELETING"), False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_users_come_and_go(lab: Lab, backend: str) -> None:
    e = make(lab, backend, "alice@123456", "carol@123457")
    try:
        e.full([])
        assert lab.routed(backend) == {}
        e.events([up("1", "alice@123456", A)])
        assert lab.routed(backend) == {"10.1.0.10": 123456}
        e.events([up("2", "bob@123456", B)])  # not on the list
        assert lab.routed(backend) == {"10.1.0.10": 123456}
        e.events([down("2", "bob@123456", B), up("3", "carol@123457", B)])
        assert lab.routed(backend) == {"10.1.0.10": 123456, "10.1.0.11": 123457}
        if backend == "rules":
            assert lab.user_rules() == {(vip, p, t) for vip, t in (("10.1.0.10", "123456"),
                                                                  ("10.1.0.11", "123457"))
                                        for p in ("10.20.0.0/16", "198.51.100.0/24")}
            # each VIP's rules at a priority of its own (10.1.0.10: 29706, 10.1.0.11: 29707)
            assert {(r["src"], r["priority"]) for r in lab.owned_rules()} == {
                (str(A), prio_of(A)), (str(B), prio_of(B))}
            assert spread_priority(e.cfg, A) == prio_of(A) == 29706
        else:
            assert lab.fwmark_tables() == {"123456", "123457"}
        e.events([down("1", "alice@123456", A)])
        assert lab.routed(backend) == {"10.1.0.11": 123457}
        if backend == "marks":
            assert lab.fwmark_tables() == {"123457"}  # a VLAN's rule goes with its last user
        e.events([down("3", "carol@123457", B)])
        assert lab.routed(backend) == {}
        prios = sorted(r["priority"] for r in lab.owned_rules())
        assert prios == ([29000, 29002] if backend == "marks" else [])  # goto + nop stay
    finally:
        close_engine(e)


def _ping(lab: Lab, src: str) -> None:
    sh("ip", "netns", "exec", lab.client, "ping", "-n", "-q", "-c", "10", "-i", "0.02", "-W", "0.2",
       "-I", src, "10.20.0.10", check=False)


def _path(lab: Lab, src: str) -> str:
    before = {d: lab.tx(d) for d in ("campus0", "lab0")}
    _ping(lab, src)
    delta = {d: lab.tx(d) - before[d] for d in before}
    if delta["lab0"] >= 10 and delta["campus0"] < 3:
        return "lab"
    if delta["campus0"] >= 10 and delta["lab0"] < 3:
        return "campus"
    return f"unclear {delta}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_forwarded_traffic_follows_the_decision(lab: Lab, backend: str) -> None:
    e = make(lab, backend, "alice@123456")
    try:
        e.full([])
        assert _path(lab, "10.1.0.10") == "campus"
        e.events([up("1", "alice@123456", A), up("2", "bob@123456", B)])
        assert _path(lab, "10.1.0.10") == "lab"
        assert _path(lab, "10.1.0.11") == "campus"  # bob is not on the list
        e.events([down("1", "alice@123456", A)])
        assert _path(lab, "10.1.0.10") == "campus"
    finally:
        close_engine(e)


@pytest.mark.parametrize("backend", BACKENDS)
def test_restart_repairs_kernel_drift(lab: Lab, backend: str) -> None:
    sas = [Sa("1", "alice@123456", (A,), "ESTABLISHED"), Sa("2", "carol@123457", (B,), "ESTABLISHED")]
    e1 = make(lab, backend, "alice@123456", "carol@123457")
    e1.full(sas)
    close_engine(e1)  # the process dies; its rules stay
    want = {"10.1.0.10": 123456, "10.1.0.11": 123457}
    assert lab.routed(backend) == want
    # drift while nobody watched: one user's policy lost, a stale one left behind, junk in the band
    stale = "10.1.0.99"
    if backend == "rules":
        sh("ip", "-n", lab.ns, "rule", "del", "priority", str(prio_of("10.1.0.10")), "from", "10.1.0.10",
           "to", "10.20.0.0/16", "lookup", "123456", "protocol", "99")
        sh("ip", "-n", lab.ns, "rule", "add", "priority", "29000", "from", stale, "to", "10.20.0.0/16",
           "lookup", "123456", "protocol", "99")
    else:
        sh("ip", "netns", "exec", lab.ns, "nft", "delete element ip ikemgr_policy users { 10.1.0.10 }")
        sh("ip", "netns", "exec", lab.ns, "nft", f"add element ip ikemgr_policy users {{ {stale} : 123456 }}")
    sh("ip", "-n", lab.ns, "rule", "add", "priority", "29500", "from", "10.9.9.9", "lookup", "77",
       "protocol", "99")  # ikemgr's protocol and band: not a shape it makes → removed
    sh("ip", "-n", lab.ns, "rule", "add", "priority", "29500", "from", "10.9.9.8", "lookup", "77")
    assert lab.routed(backend) != want
    e2 = make(lab, backend, "alice@123456", "carol@123457")
    try:
        r = e2.full(sas)
        assert lab.routed(backend) == want
        assert r.stray >= 1
        foreign = [x for x in sh("ip", "-N", "-n", lab.ns, "-j", "rule", "show").stdout.split("},")
                   if "10.9.9." in x]
        assert len(foreign) == 1 and "10.9.9.8" in foreign[0]  # not ikemgr's protocol: untouched
        assert e2.full(sas).plan.empty  # idempotent
    finally:
        close_engine(e2)


HOSTILE: list[str | bytes] = [
    "$(reboot)@123456", "`id`@123456", "a;rm -rf /@123456", "a|b@123456", "a&&b@123456", "a>b@123456",
    "a b@123456", "'a'@123456", '"a"@123456', "a\\b@123456", "a\nb@123456", "a\tb@123456",
    ".*@123456", "^alice$@123456", "[a-z]+@123456", "(a)@123456", "a{1,3}@123456", "a?@123456",
    "alice.*@123456", "a+@123456", "..@123456", "../../etc@123456", "a..b@123456", ".alice@123456",
    "-alice@123456", "x" * 65 + "@123456", "y" * 300, "a" * 129, "alice\x00@123456", b"\xff@123456",
    b"\xc3\x28@123456", b"alice\xe2\x82@123456", "a@1@2", "@123456", "alice@", "@", "alice@0123456",
    "alice@00", "alice@0", "alice@1234567890", "alice@12345a", "alice@-1", "alice@+123456",
    "alice@１２３４５６", "ALICE@123456", "alice@123456 ", " alice@123456", "alice@999999",
    "alice@123458", "%any", "192.0.2.100", "alice@123456\r", "ａlice@123456", "alice\u202e@123456",
    "alice@123456;", "*@123456",
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_identities_get_no_rule_and_one_log_line_each(
        lab: Lab, backend: str, caplog: pytest.LogCaptureFixture) -> None:
    assert len(HOSTILE) >= 50
    e = make(lab, backend, "alice@123456")
    caplog.set_level(logging.INFO, logger="ikemgr.policy")
    try:
        e.full([])
        ups = [up(str(100 + i), ident, IPv4Address(f"10.1.0.{20 + i}")) for i, ident in enumerate(HOSTILE)]
        e.events(ups[: len(ups) // 2])  # in two batches, and each SA repeated (child-updown)
        e.events(ups)
        e.full([u.sa for u in ups])
        assert lab.routed(backend) == {}
        if backend == "marks":
            assert lab.map_elements() == {}
        decisions = [r.fields for r in caplog.records if r.getMessage() == "decision"]  # type: ignore[attr-defined]
        assert sorted(d["uniqueid"] for d in decisions) == sorted(f"'{100 + i}'" for i in range(len(HOSTILE)))
        assert {d["outcome"] for d in decisions} <= {"rejected-identity", "unknown-vlan", "no-vlan"}
        for d in decisions:
            assert "\n" not in d["identity"] and "\x00" not in d["identity"]
    finally:
        close_engine(e)


def _ct_sources(lab: Lab) -> list[str]:
    out = sh("ip", "netns", "exec", lab.ns, "conntrack", "-L", "-p", "icmp", check=False).stdout
    return [w.split("=", 1)[1] for line in out.splitlines() for w in line.split()[:6] if w.startswith("src=")]


@pytest.mark.parametrize("long_lived", [False, True], ids=["in-thread", "child-process"])
def test_conntrack_entries_of_a_vip_are_flushed_when_its_path_changes(lab: Lab, long_lived: bool) -> None:
    # conntrack is active on a real gateway (SNAT); here one counting rule switches it on
    sh("ip", "netns", "exec", lab.ns, "nft",
       "add table ip ikt; add chain ip ikt f { type filter hook forward priority 0; }; "
       "add rule ip ikt f ct state new counter")
    cfg = load(lab.config("marks"))
    e = build_engine(cfg, netns=lab.ns, allow_file=allow_file(lab, "alice@123456"), long_lived=long_lived)
    try:
        e.full([])
        _ping(lab, "10.1.0.10")
        _ping(lab, "10.1.0.11")
        assert {"10.1.0.10", "10.1.0.11"} <= set(_ct_sources(lab))
        e.events([up("1", "alice@123456", A)])
        assert e.flusher is not None
        e.flusher.wait_idle(5)
        srcs = _ct_sources(lab)
        assert "10.1.0.10" not in srcs and "10.1.0.11" in srcs  # only the VIP whose path changed
        assert e.flusher.flushed == 1 and e.flusher.errors == 0
        child = getattr(e.flusher._way, "child", None)  # only the child-process way has one
        if long_lived:  # watch's engine: the dump was parsed by a child in the gateway's namespace
            assert child is not None and child.poll() is None
            assert os.stat(f"/proc/{child.pid}/ns/net").st_ino == os.stat(f"/run/netns/{lab.ns}").st_ino
        else:
            assert child is None
    finally:
        close_engine(e)
    if long_lived:
        assert child is not None and child.wait(timeout=5) == 0  # ended with its input


def test_the_flush_child_never_imports_from_the_working_directory(lab: Lab, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """watch started from a directory holding an ``ikemgr`` package of its own (a checkout of
    another version, or a planted one): the child is this installation's, not that one."""
    from ikemgr.adapters.conntrack import ConntrackFlusher

    fake = tmp_path / "ikemgr" / "adapters"
    fake.mkdir(parents=True)
    (tmp_path / "ikemgr" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    marker = tmp_path / "imported"
    (fake / "conntrack_child.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    f = ConntrackFlusher(lab.ns, out_of_process=True, min_gap=0.05)
    try:
        f.flush(frozenset({A}))
        f.wait_idle(10)
        until(lambda: f.runs >= 1, 10)
        assert f.flushed == 1 and f.errors == 0
    finally:
        f.close()
    assert not marker.exists()


@pytest.mark.parametrize("way", ["filtered", "dump"])
def test_both_ways_of_the_flush_delete_exactly_the_vips_entries(lab: Lab, way: str) -> None:
    """The kernel's filtered delete (a few VIPs) and the dump (many) against this kernel:
    the entries of the VIPs go, every other entry stays."""
    from ikemgr.adapters.kernel.ct_channel import CtChannel
    from ikemgr.adapters.kernel.netns import InNetns

    sh("ip", "netns", "exec", lab.ns, "nft",
       "add table ip ikt; add chain ip ikt f { type filter hook forward priority 0; }; "
       "add rule ip ikt f ct state new counter")
    sh("ip", "-n", lab.client, "addr", "add", "10.1.0.12/24", "dev", "eth0")  # a third user
    for vip in ("10.1.0.10", "10.1.0.11", "10.1.0.12"):
        _ping(lab, vip)
    assert {"10.1.0.10", "10.1.0.11", "10.1.0.12"} <= set(_ct_sources(lab))
    ex = InNetns(lab.ns)
    try:
        def run() -> tuple[tuple[int, int], bool]:
            ct = CtChannel()
            try:
                ct.filtered = way == "filtered"
                return ct.flush({int(IPv4Address("10.1.0.10")), int(IPv4Address("10.1.0.12"))}), ct.filtered
            finally:
                ct.close()

        (deleted, failed), still_filtered = ex.call(run)
    finally:
        ex.close()
    srcs = _ct_sources(lab)
    assert "10.1.0.10" not in srcs and "10.1.0.12" not in srcs and "10.1.0.11" in srcs
    assert failed == 0
    if way == "filtered":
        assert still_filtered and deleted == 0  # this kernel has filtered deletes; no count
    else:
        assert deleted >= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_bulk_changes_in_one_batch(lab: Lab, backend: str) -> None:
    """A restart with many users: every change in one apply, and back, idempotently."""
    e = make(lab, backend, *[f"u{i}@{123456 + i % 2}" for i in range(60)])
    sas = [Sa(str(i + 1), f"u{i}@{123456 + i % 2}", (IPv4Address("10.1.0.100") + i,), "ESTABLISHED")
           for i in range(60)]
    try:
        e.full(sas)
        want = {str(IPv4Address("10.1.0.100") + i): 123456 + i % 2 for i in range(60)}
        assert lab.routed(backend) == want
        if backend == "rules":
            assert len(lab.user_rules()) == 120  # two campus prefixes each
        e.full(sas[:10])
        assert lab.routed(backend) == dict(list(want.items())[:10])
        e.full([])
        assert lab.routed(backend) == {}
        assert e.full(sas).plan.add and lab.routed(backend) == want  # and back, idempotently
        assert e.full(sas).plan.empty
    finally:
        close_engine(e)


def test_rule_dump_reads_the_kernel_as_iproute2_shows_it(lab: Lab) -> None:
    """The RTM_GETRULE dump against rules iproute2 added: ours in the band, nothing else."""
    from ipaddress import ip_network

    from ikemgr.adapters.kernel.netns import InNetns
    from ikemgr.adapters.kernel.rule_channel import RuleSocket
    from ikemgr.core.model import Rule

    for args in (["priority", "29000", "from", "10.1.0.10/32", "to", "10.20.0.0/16", "lookup", "123456"],
                 ["priority", "29001", "fwmark", "0x1e240/0xffffffff", "lookup", "123456"],
                 ["priority", "29002", "not", "from", "10.1.0.11/32", "lookup", "200"],
                 ["priority", "29003", "iif", "lo", "lookup", "200"],
                 ["priority", "29004", "nop"],
                 ["priority", "29005", "fwmark", "0/0xffffffff", "lookup", "200"]):
        sh("ip", "-n", lab.ns, "rule", "add", *args, "protocol", "99")
    sh("ip", "-n", lab.ns, "rule", "add", "priority", "29006", "lookup", "200", "protocol", "4")  # not ours
    sh("ip", "-n", lab.ns, "rule", "add", "priority", "31000", "lookup", "200", "protocol", "99")  # out of band
    ex = InNetns(lab.ns)
    chan = RuleSocket(ex, 99)
    try:
        got = chan.dump(29000, 30001)
    finally:
        chan.close()
        ex.close()
    assert [r.priority for r in got] == [29000, 29001, 29002, 29003, 29004, 29005]
    assert got[0] == Rule(29000, 123456, ip_network("10.1.0.10/32"), ip_network("10.20.0.0/16"))
    assert got[1] == Rule(29001, 123456, fwmark=123456)
    assert got[2].action == "foreign" and got[3].action == "foreign"
    assert got[4] == Rule(29004, action="nop")
    # mark 0: the kernel sends only FRA_FWMASK (as for the marks backend's goto rule)
    assert got[5] == Rule(29005, 200, fwmark=0, fwmask=0xFFFFFFFF)


def test_a_refused_request_inside_a_send_is_reported_and_the_rest_applied(lab: Lab) -> None:
    """Only the last request of a send asks for an ACK; a failure before it is still
    answered and named. The kernel refuses a goto that points backwards (EINVAL): between
    two good adds, in one send, it raises ApplyFailed naming its priority, the good adds
    are in the kernel, a delete of a missing rule and a repeated add count as done."""
    from ipaddress import ip_network

    from ikemgr.adapters.kernel.netns import InNetns
    from ikemgr.adapters.kernel.rule_channel import RuleSocket
    from ikemgr.core.model import Rule
    from ikemgr.errors import ApplyFailed

    good = [Rule(29100 + i, 123456, ip_network(f"10.1.0.{20 + i}/32"), ip_network("10.20.0.0/16"))
            for i in range(3)]
    bad = Rule(29150, fwmark=0, fwmask=0xFFFFFFFF, action="goto", goto=29140)
    ex = InNetns(lab.ns)
    chan = RuleSocket(ex, 99)
    try:
        with pytest.raises(ApplyFailed, match=r"ip rule add priority 29150: Invalid argument"):
            chan.change([good[0], bad, good[1]], [], exclusive=False)
        assert [r for r in chan.dump(29100, 29200)] == good[:2]
        chan.change([good[0], good[2]], [Rule(29199, 200)])  # EEXIST and ENOENT: done
        assert chan.dump(29100, 29200) == good
        chan.change([], good)
        assert chan.dump(29100, 29200) == []
    finally:
        chan.close()
        ex.close()


def test_an_open_rule_socket_stays_in_its_namespace_without_entering_it(lab: Lab) -> None:
    """The socket keeps the namespace it was opened in: once open, changes and dumps go there
    without the thread entering it (no setns per batch), never to the host's rule list; a
    socket reset after an error is opened inside the namespace again."""
    from ipaddress import ip_network

    from ikemgr.adapters.kernel.netns import InNetns
    from ikemgr.adapters.kernel.rule_channel import RuleSocket
    from ikemgr.core.model import Rule

    rule = Rule(29300, 123456, ip_network("10.1.0.40/32"), ip_network("10.20.0.0/16"))
    ex = InNetns(lab.ns)
    entered: list[str] = []
    real_call = ex.call

    def counted(fn, *args):  # type: ignore[no-untyped-def]
        entered.append(getattr(fn, "__name__", "?"))
        return real_call(fn, *args)

    ex.call = counted  # type: ignore[method-assign]
    chan = RuleSocket(ex, 99)
    try:
        assert chan.dump(29300, 29400) == [] and len(entered) == 1  # opened inside the namespace
        chan.change([rule], [], exclusive=False)
        assert chan.dump(29300, 29400) == [rule] and len(entered) == 1  # no setns since
        host = subprocess.run(["ip", "-j", "rule", "show"], capture_output=True, text=True, check=True).stdout
        assert "10.1.0.40" not in host
        assert "10.1.0.40" in sh("ip", "-n", lab.ns, "rule", "show", "priority", "29300").stdout
        chan._reset()  # what an OSError on the socket does
        chan.change([], [rule])
        assert len(entered) == 2 and chan.dump(29300, 29400) == []  # the new socket: inside again
    finally:
        chan.close()
        ex.close()


def test_marks_element_changes_are_one_transaction_the_kernel_takes_whole_or_not_at_all(lab: Lab) -> None:
    """marks: a batch's map changes go over nfnetlink as one transaction. The kernel holds
    what was sent (the mark as nft reads it back); a refused delete (the element was removed
    behind the engine) aborts the batch, so the add in it is not there either, the engine
    reports ApplyFailed, and its next full reconcile puts the kernel right."""
    from ikemgr.errors import ApplyFailed

    e = make(lab, "marks", "alice@123456", "carol@123457", "bob@123456")
    try:
        e.full([])
        e.events([up("1", "alice@123456", A), up("2", "carol@123457", B)])
        assert lab.map_elements() == {str(A): 123456, str(B): 123457}
        sh("ip", "netns", "exec", lab.ns, "nft", "delete", "element", "ip", "ikemgr_policy", "users",
           f"{{ {A} }}")  # behind the engine's index
        c = IPv4Address("10.1.0.12")
        with pytest.raises(ApplyFailed, match="nft delete element: No such file or directory"):
            e.events([down("1", "alice@123456", A), up("3", "bob@123456", c)])
        assert lab.map_elements() == {str(B): 123457}  # bob's add went with the refused delete
        e.invalidate()
        e.full([Sa("2", "carol@123457", (B,), "ESTABLISHED"), Sa("3", "bob@123456", (c,), "ESTABLISHED")])
        assert lab.map_elements() == {str(B): 123457, str(c): 123456}
        assert lab.routed("marks") == {str(B): 123457, str(c): 123456}
    finally:
        close_engine(e)


def test_a_failed_map_read_is_an_error_and_the_retry_repairs(lab: Lab) -> None:
    """marks: the nft map vanished behind the engine. Reading it fails; that is an error
    (BackendUnavailable naming the map), never "nothing owned", and the retry (what watch
    does after backing off) sets the map up again and puts the users back."""
    from ikemgr.errors import BackendUnavailable

    sas = [Sa("1", "alice@123456", (A,), "ESTABLISHED"), Sa("2", "carol@123457", (B,), "ESTABLISHED")]
    e = make(lab, "marks", "alice@123456", "carol@123457")
    try:
        e.full(sas)
        want = {"10.1.0.10": 123456, "10.1.0.11": 123457}
        assert lab.routed("marks") == want
        sh("ip", "netns", "exec", lab.ns, "nft", "flush chain ip ikemgr_policy prerouting")
        sh("ip", "netns", "exec", lab.ns, "nft", "delete map ip ikemgr_policy users")
        with pytest.raises(BackendUnavailable, match="cannot read map ikemgr_policy users"):
            e.full(sas)
        e.full(sas)
        assert lab.routed("marks") == want
    finally:
        close_engine(e)


@pytest.mark.parametrize("long_lived", [False, True], ids=["in-thread", "child"])
def test_a_conntrack_flush_that_cannot_run_is_counted_never_taken_as_done(long_lived: bool) -> None:
    """A namespace that is gone: the in-thread flusher cannot enter it (it says so once and
    counts every VIP it can no longer flush); the child process cannot start in it (each
    failed run is counted, the batch is retried once, then given up). Nothing counts as
    flushed."""
    from ikemgr.adapters.conntrack import ConntrackFlusher

    seen: list[tuple[str, int]] = []
    f = ConntrackFlusher("ikt-p-gone" + os.urandom(2).hex(), out_of_process=long_lived, min_gap=0.05,
                         on_error=lambda kind, n: seen.append((kind, n)))
    try:
        f.flush(frozenset({A, B}))
        f.wait_idle(10)
        until(lambda: f.errors >= 2, 10)
        f.flush(frozenset({A}))
        f.wait_idle(10)
        assert f.flushed == 0 and f.deleted == 0
        assert f.errors >= 2 and sum(n for _, n in seen) == f.errors
        if long_lived:
            assert [k for k, _ in seen].count("flush") >= 2 and f.broken is None
        else:
            assert f.broken is not None and ("start", 1) in seen
    finally:
        f.close()


@pytest.mark.parametrize("long_lived", [False, True], ids=["in-thread", "child"])
def test_a_flush_waits_for_a_lull_in_the_stream_and_at_most_max_defer(lab: Lab, long_lived: bool) -> None:
    """watch's flusher (quiet > 0): while VIPs keep being queued no dump runs; the run comes
    once the queue was quiet for ``quiet``; a stream that never pauses is flushed after
    ``max_defer`` all the same, and everything queued is flushed."""
    import time

    from ikemgr.adapters.conntrack import ConntrackFlusher

    f = ConntrackFlusher(lab.ns, out_of_process=long_lived, min_gap=0.05, quiet=0.2, max_defer=1.0)
    try:
        vips = [IPv4Address("10.1.3.0") + i for i in range(200)]
        t0 = time.monotonic()
        for v in vips[:30]:  # 0.6 s of a stream, a VIP every 20 ms
            f.flush(frozenset({v}))
            time.sleep(0.02)
        assert f.runs == 0 and f.flushed == 0  # no run while the stream flows
        until(lambda: f.runs == 1, 5)
        assert f.flushed == 30 and f.errors == 0
        # a stream that never pauses (2.8 s): flushed every max_defer, not only at its end
        t1 = time.monotonic()
        runs_at: list[float] = []
        for v in vips[30:170]:
            before = f.runs
            f.flush(frozenset({v}))
            time.sleep(0.02)
            if f.runs > before:
                runs_at.append(time.monotonic() - t1)
        assert len(runs_at) >= 2 and runs_at[0] >= 0.9, runs_at  # not before max_defer
        f.wait_idle(5)
        until(lambda: f.flushed == 170, 5)
        assert f.errors == 0 and time.monotonic() - t0 < 10
    finally:
        f.close()


def test_a_rule_doubled_behind_the_index_is_undone_by_the_next_full_reconcile(lab: Lab) -> None:
    """The adds skip the kernel's duplicate check: what they add is absent by the index,
    which every ikemgr process keeps right (the lock and the generation). A rule written by
    hand behind the index is doubled by an event batch; the next full reconcile leaves each
    rule once, and a disconnect after it leaves none."""
    e = make(lab, "rules", "alice@123456", "carol@123457")
    try:
        e.full([Sa("1", "alice@123456", (A,), "ESTABLISHED")])
        assert len(lab.owned_rules()) == 2  # two campus prefixes, once each
        # carol's rule, as watch would write it, by hand: the engine's index does not know it
        for p in ("10.20.0.0/16", "198.51.100.0/24"):
            sh("ip", "-n", lab.ns, "rule", "add", "from", f"{B}/32", "to", p, "lookup", "123457",
               "priority", str(prio_of(B)), "protocol", "99")
        e.events([up("3", "carol@123457", B)])
        assert sorted(r["src"] for r in lab.owned_rules()) == [str(A), str(A)] + [str(B)] * 4
        e.full([Sa("1", "alice@123456", (A,), "ESTABLISHED"), Sa("3", "carol@123457", (B,), "ESTABLISHED")])
        assert sorted(r["src"] for r in lab.owned_rules()) == [str(A), str(A), str(B), str(B)]
        e.events([down("3", "carol@123457", B)])
        assert sorted(r["src"] for r in lab.owned_rules()) == [str(A), str(A)]
    finally:
        close_engine(e)


def test_rules_at_one_priority_from_an_older_ikemgr_move_to_their_own(lab: Lab) -> None:
    """A gateway upgraded from a build that put every user's rules at user_priority: the
    first reconcile moves them to their VIP's priority, each user's new rules in the kernel
    before the old ones go (rtnetlink's own notifications, in order, say so)."""
    import socket
    import struct
    import threading

    from ikemgr.adapters.kernel.netns import enter
    from ikemgr.adapters.kernel.rule_channel import RTM_DELRULE, RTM_NEWRULE, decode_rule

    for vip, table in ((A, "123456"), (B, "123457")):
        for p in ("10.20.0.0/16", "198.51.100.0/24"):
            sh("ip", "-n", lab.ns, "rule", "add", "priority", "29000", "from", f"{vip}/32", "to", p,
               "lookup", table, "protocol", "99")
    seen: list[tuple[str, str, int]] = []
    ready, stop = threading.Event(), threading.Event()

    def listen() -> None:
        enter(lab.ns)
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        s.bind((0, 1 << (8 - 1)))  # RTNLGRP_IPV4_RULE
        s.settimeout(0.2)
        ready.set()
        while not stop.is_set():
            try:
                data = s.recv(1 << 16)
            except TimeoutError:
                continue
            off = 0
            while off + 16 <= len(data):
                size, kind = struct.unpack_from("=IH", data, off)
                if kind in (RTM_NEWRULE, RTM_DELRULE):
                    r, _proto = decode_rule(data, off + 16, size - 16)
                    if r.src is not None:
                        seen.append(("add" if kind == RTM_NEWRULE else "del", str(r.src.network_address),
                                     r.priority))
                off += (size + 3) & ~3
        s.close()

    t = threading.Thread(target=listen)
    t.start()
    ready.wait(5)
    e = make(lab, "rules", "alice@123456", "carol@123457")
    try:
        e.full([Sa("1", "alice@123456", (A,), "ESTABLISHED"), Sa("3", "carol@123457", (B,), "ESTABLISHED")])
        assert {(r["src"], r["priority"]) for r in lab.owned_rules()} == {
            (str(A), prio_of(A)), (str(B), prio_of(B))}
        assert len(lab.owned_rules()) == 4
        until(lambda: len(seen) >= 8, 5)
    finally:
        stop.set()
        t.join(5)
        close_engine(e)
    for vip in (str(A), str(B)):
        mine = [(verb, prio) for verb, src, prio in seen if src == vip]
        assert sorted(mine) == [("add", prio_of(vip))] * 2 + [("del", 29000)] * 2
        last_add = max(i for i, (verb, _) in enumerate(mine) if verb == "add")
        first_del = min(i for i, (verb, _) in enumerate(mine) if verb == "del")
        assert last_add < first_del, mine  # make before break


def test_enter_moves_only_the_calling_thread_and_never_creates_a_namespace(lab: Lab) -> None:
    """netns.enter (setns through libc, no pyroute2): the thread that calls it is in the
    namespace, the rest of the process is not; a missing name is an error, not a new one."""
    import threading

    from ikemgr.adapters.kernel.netns import NETNS_DIR, enter

    seen: dict[str, int] = {}

    def inside() -> None:
        enter(lab.ns)
        seen["thread"] = os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino

    t = threading.Thread(target=inside)
    t.start()
    t.join(5)
    assert seen["thread"] == os.stat(f"/run/netns/{lab.ns}").st_ino
    assert os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino != seen["thread"]
    missing = "ikt-p-none" + os.urandom(2).hex()
    with pytest.raises(OSError):
        enter(missing)
    assert not (NETNS_DIR / missing).exists()
