"""Rendered files: atomic, mode-correct, untouched when unchanged, stale ones removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ikemgr.render.files import sync_outputs
from ikemgr.render.templates import Output


def test_unchanged_render_touches_nothing(tmp_path: Path) -> None:
    outs = [Output("a/b.conf", "one\n"), Output("s/secret.conf", "pw\n", mode=0o600, secret=True)]
    first = sync_outputs(tmp_path, outs)
    assert [c.action for c in first] == ["created", "created"]
    st = os.stat(tmp_path / "a/b.conf")
    second = sync_outputs(tmp_path, outs)
    assert [c.action for c in second] == ["unchanged", "unchanged"]
    st2 = os.stat(tmp_path / "a/b.conf")
    assert (st.st_ino, st.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns)
    assert oct((tmp_path / "s/secret.conf").stat().st_mode & 0o777) == "0o600"


def test_update_mode_fix_diff_and_stale_removal(tmp_path: Path) -> None:
    sync_outputs(tmp_path, [Output("x.conf", "old\n"), Output("gone.conf", "bye\n")])
    (tmp_path / "x.conf").chmod(0o666)
    changes = {c.path: c for c in sync_outputs(tmp_path, [Output("x.conf", "old\n")], dry_run=True)}
    assert changes["x.conf"].action == "mode" and changes["gone.conf"].action == "removed"
    assert (tmp_path / "gone.conf").exists()  # dry run wrote nothing
    changes = {c.path: c for c in sync_outputs(tmp_path, [Output("x.conf", "new\n")])}
    assert changes["x.conf"].action == "updated"
    assert "-old" in changes["x.conf"].diff and "+new" in changes["x.conf"].diff
    assert not (tmp_path / "gone.conf").exists()
    assert (tmp_path / "x.conf").stat().st_mode & 0o777 == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_secret_diff_is_hidden_and_foreign_files_kept(tmp_path: Path) -> None:
    (tmp_path / "foreign.conf").write_text("not ours\n")
    sync_outputs(tmp_path, [Output("k.conf", "secret1\n", mode=0o600, secret=True)])
    c = sync_outputs(tmp_path, [Output("k.conf", "secret2\n", mode=0o600, secret=True)])[0]
    assert "secret" not in c.diff.replace("holds a secret", "")
    sync_outputs(tmp_path, [])
    assert (tmp_path / "foreign.conf").read_text() == "not ours\n"


def test_a_link_output_is_a_symlink_replaced_only_when_it_points_elsewhere(tmp_path: Path) -> None:
    link = Output("freeradius/ikemgr-crl/3b4263c3.r0", "", link="/etc/ikemgr/pki/crl.pem")
    changes = sync_outputs(tmp_path, [link])
    target = tmp_path / link.path
    assert [c.action for c in changes] == ["created"] and target.is_symlink()
    assert str(target.readlink()) == "/etc/ikemgr/pki/crl.pem"  # dangling is fine: the CRL is elsewhere
    assert [c.action for c in sync_outputs(tmp_path, [link])] == ["unchanged"]
    moved = Output(link.path, "", link="/srv/pki/crl.pem")
    assert [c.action for c in sync_outputs(tmp_path, [moved])] == ["updated"]
    assert str(target.readlink()) == "/srv/pki/crl.pem"
    # a regular file in its place is replaced by the link, and a dropped link is removed
    target.unlink()
    target.write_text("x")
    assert [c.action for c in sync_outputs(tmp_path, [moved])] == ["updated"] and target.is_symlink()
    assert [c.action for c in sync_outputs(tmp_path, [])] == ["removed"]
    assert not target.is_symlink() and not target.exists()
    with pytest.raises(ValueError, match="absolute"):
        Output("x.r0", "", link="relative/crl.pem")
