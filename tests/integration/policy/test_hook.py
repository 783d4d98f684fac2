"""`ikemgr hook` as charon's updown would run it (the real CLI, PLUTO_* environment), and the
engine's event path, both against the scenario table in the real kernel."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ikemgr.config.load import load
from ikemgr.core.model import Sa, SaUpdate
from ikemgr.engine.wiring import build_engine, close_engine

from .conftest import IKEMGR, Lab
from .scenarios import ALLOWED, SCENARIO

pytestmark = pytest.mark.root
BACKENDS = ["marks", "rules"]


def env(verb: str, uid: str, vip: str, ident: str) -> dict[str, str]:
    return {"PLUTO_VERB": f"{verb}-client", "PLUTO_UNIQUEID": uid, "PLUTO_PEER_SOURCEIP": vip,
            "PLUTO_XAUTH_ID": ident, "PLUTO_PEER_ID": "192.0.2.100", "PLUTO_CONNECTION": "kuins"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_hook_cli_scenario(lab: Lab, backend: str) -> None:
    cfg = lab.config(backend)
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(ALLOWED) + "\n")
    for i, (verb, uid, vip, ident, want) in enumerate(SCENARIO):
        p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow),
                       env=env(verb, uid, vip, ident))
        assert p.returncode == 0, (i, p.stderr)
        assert lab.routed(backend) == want, (i, verb, uid, ident)
    # the hook logs one decision line per SA it decided on, with the identity made safe
    p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow),
                   "--log-format", "json", env=env("up", "9", "10.1.0.30", "a\nb;`x`@123456"))
    assert p.returncode == 0
    lines = [ln for ln in p.stderr.splitlines() if '"decision"' in ln]
    assert len(lines) == 1 and '"outcome": "rejected-identity"' in lines[0]
    assert lab.routed(backend) == {}


def test_updown_console_script_with_charons_bare_environment(lab: Lab) -> None:
    """``ikemgr-updown`` as charon runs it: only PLUTO_* and a PATH without the venv."""
    cfg = lab.config("marks")
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(ALLOWED) + "\n")
    updown = IKEMGR.with_name("ikemgr-updown")
    bare = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    args = [str(updown), "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60,
                       env={**bare, **env("up", "7", "10.1.0.10", "alice@123456")})
    assert p.returncode == 0, p.stderr
    assert lab.routed("marks") == {"10.1.0.10": 123456}
    assert "alice@123456" in p.stderr and "{" not in p.stderr  # text log lines, for charon's log
    p = subprocess.run(args, capture_output=True, text=True, timeout=60,
                       env={**bare, **env("down", "7", "10.1.0.10", "alice@123456")})
    assert p.returncode == 0, p.stderr
    assert lab.routed("marks") == {}


def test_hook_ignores_other_verbs_and_rejects_bad_env(lab: Lab) -> None:
    cfg = lab.config("marks")
    p = lab.ikemgr("hook", "--config", str(cfg), env={"PLUTO_VERB": "prepare-host"})
    assert p.returncode == 0 and "nothing to do" in p.stdout
    p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns,
                   env=env("up", "1; reboot", "10.1.0.10", "alice@123456"))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: PLUTO_UNIQUEID '1; reboot' is not a unique id"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_event_path_scenario(lab: Lab, backend: str) -> None:
    """The same table through Engine.events, the path watch takes for each VICI batch."""
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(ALLOWED) + "\n")
    e = build_engine(load(lab.config(backend)), netns=lab.ns, allow_file=allow)
    try:
        e.full([])
        for i, (verb, uid, vip, ident, want) in enumerate(SCENARIO):
            state = "ESTABLISHED" if verb == "up" else "DELETING"
            sa = Sa(uid, ident, (IPv4Address(vip),), state)
            e.events([SaUpdate("ike-updown", sa, sa.live)])
            assert lab.routed(backend) == want, (i, verb, uid, ident)
    finally:
        close_engine(e)


def test_hook_down_removes_policy_even_without_its_record(lab: Lab) -> None:
    """The SA file lost (or the up ran before an upgrade): the down still cleans up."""
    cfg = lab.config("rules")
    allow = lab.tmp / "allow.txt"
    allow.write_text("alice@123456\n")
    args = ("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow))
    assert lab.ikemgr(*args, env=env("up", "1", "10.1.0.10", "alice@123456")).returncode == 0
    assert lab.routed("rules") == {"10.1.0.10": 123456}
    (lab.tmp / "state" / "hook-sas.json").unlink()
    p = lab.ikemgr(*args, env=env("down", "1", "10.1.0.10", "alice@123456"))
    assert p.returncode == 0, p.stderr
    assert lab.routed("rules") == {}


def _holds(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (hook opens the lock file, then polls flock)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if Path(os.readlink(fd)) == path:
                return True
        except OSError:
            continue
    return False


def test_hook_waits_for_the_policy_lock(lab: Lab) -> None:
    """The lock watch takes (fcntl.flock on policy.lock_file) serialises hook: held by the
    test, hook waits; released, hook finishes and the rule appears; --lock-timeout gives up
    with exit 4 and one clear line."""
    cfg = lab.config("marks")
    allow = lab.tmp / "allow.txt"
    allow.write_text("alice@123456\n")
    lock_path = lab.tmp / "ikemgr.lock"
    args = [str(IKEMGR), "hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow)]
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        p = lab.ikemgr(*args[1:], "--lock-timeout", "0.5", env=env("up", "1", "10.1.0.10", "alice@123456"))
        assert p.returncode == 4, p.stderr
        assert p.stderr.strip().splitlines() == [
            f"error: lock {lock_path} is held by another ikemgr process (gave up after 0.5 s)"]
        assert lab.routed("marks") == {}

        proc = subprocess.Popen(args, env={**os.environ, **env("up", "1", "10.1.0.10", "alice@123456")},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while not _holds(proc.pid, lock_path):  # hook has opened the lock file: it is waiting
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "hook never reached the lock"
                time.sleep(0.02)
            time.sleep(1.0)
            assert proc.poll() is None, "hook did not wait for the lock"
            assert lab.routed("marks") == {}
            released = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_UN)
            out, err = proc.communicate(timeout=30)
            finished = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert finished - released < 10  # it went ahead once the lock was free
        assert lab.routed("marks") == {"10.1.0.10": 123456}
    finally:
        os.close(fd)


def test_non_utf8_and_overlong_identities_from_the_updown_environment(lab: Lab, tmp_path: Path) -> None:
    """charon hands updown whatever bytes the client sent: a non-UTF-8 or 10 kB identity
    reaches `ikemgr hook` through the real process environment. Each is refused with one
    warning line (escaped, truncated), no rule, exit 0 (charon must not fail the SA's
    other scripts); journald gets the warning's priority from the line's <4> prefix."""
    cfg = lab.config("marks")
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(ALLOWED) + "\n")
    for i, ident in enumerate([b"\xff\xfe@123456", b"alice\xe2\x82@123456", b"a" * 10_000 + b"@123456",
                               ("ä" * 300 + "@123456").encode()]):
        envb = {b"PATH": os.environ["PATH"].encode(), b"PLUTO_VERB": b"up-client",
                b"PLUTO_UNIQUEID": str(40 + i).encode(), b"PLUTO_PEER_SOURCEIP": f"10.1.0.{40 + i}".encode(),
                b"PLUTO_XAUTH_ID": ident, b"PLUTO_CONNECTION": b"kuins"}
        err = tmp_path / f"stderr{i}"
        with err.open("wb") as f:
            st = os.fstat(f.fileno())
            envb[b"JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}".encode()
            p = subprocess.run([str(IKEMGR), "hook", "--config", str(cfg), "--netns", lab.ns,
                                "--allow-file", str(allow)], env=envb, stdout=subprocess.PIPE,  # type: ignore[arg-type]
                               stderr=f, timeout=60)
        text = err.read_text(errors="strict")  # the log itself is clean text
        assert p.returncode == 0, text
        warnings = [ln for ln in text.splitlines() if ln.startswith("<4>") and "rejected-identity" in ln]
        assert len(warnings) == 1, text
        # escaped (\xff) or truncated (…, written \u2026 by the ASCII-only log), never raw
        assert len(warnings[0]) < 1000 and ("\\x" in warnings[0] or "\\u2026" in warnings[0]), warnings[0]
        assert lab.routed("marks") == {}


def test_log_level_from_the_config_and_the_option(lab: Lab) -> None:
    """observability.log_level: warning hides the info lines; --log-level debug overrides it."""
    cfg = lab.config("marks", name="-quiet", observability={"log_level": "warning"})
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(ALLOWED) + "\n")
    p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow),
                   env=env("up", "50", "10.1.0.50", "alice@123456"))
    assert p.returncode == 0 and "info " not in p.stderr, p.stderr
    p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow), "--log-level",
                   "info", env=env("down", "50", "10.1.0.50", "alice@123456"))
    assert p.returncode == 0 and "info ikemgr" in p.stderr, p.stderr
    p = lab.ikemgr("hook", "--config", str(cfg), "--log-level", "loud",
                   env=env("down", "50", "10.1.0.50", "alice@123456"))
    assert p.returncode == 2 and "--log-level must be one of" in p.stderr
