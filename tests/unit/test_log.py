"""ikemgr.log: one line per record; the lines of one batch go out together, none lost or reordered."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ikemgr.log import lines_held, log_event


def test_lines_held_go_out_in_one_write_after_the_block(log_stderr: io.StringIO) -> None:
    log_event("before", event="a")
    writes = log_stderr.writes  # type: ignore[attr-defined]
    with lines_held():
        for i in range(5):
            log_event("rule added", event="rule-add", n=i)
        logging.getLogger("ikemgr.policy").warning("odd", extra={"fields": {"event": "w"}})
        assert log_stderr.getvalue().count("\n") == 1  # nothing written yet
    assert log_stderr.writes == writes + 1  # type: ignore[attr-defined]
    lines = log_stderr.getvalue().splitlines()
    assert [json.loads(ln[3:])["event"] for ln in lines] == ["a", "rule-add", "rule-add", "rule-add",
                                                            "rule-add", "rule-add", "w"]
    assert [ln[:3] for ln in lines] == ["<6>"] * 6 + ["<4>"]  # journald priorities kept
    assert [json.loads(ln[3:]).get("n") for ln in lines[1:6]] == [0, 1, 2, 3, 4]


def test_lines_held_are_written_when_the_block_raises(log_stderr: io.StringIO) -> None:
    with pytest.raises(RuntimeError), lines_held():
        log_event("rule added", event="rule-add")
        raise RuntimeError("apply failed")
    assert json.loads(log_stderr.getvalue()[3:])["event"] == "rule-add"


def test_nested_blocks_write_once_at_the_outer_end(log_stderr: io.StringIO) -> None:
    with lines_held():
        with lines_held():
            log_event("one", event="x")
        assert log_stderr.getvalue() == ""
        log_event("two", event="y")
    assert [json.loads(ln[3:])["msg"] for ln in log_stderr.getvalue().splitlines()] == ["one", "two"]
