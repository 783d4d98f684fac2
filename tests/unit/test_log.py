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


@pytest.mark.parametrize(("fmt", "journal"), [("json", True), ("json", False), ("text", False)])
def test_a_held_line_is_the_same_line_the_record_path_writes(monkeypatch: pytest.MonkeyPatch, fmt: str,
                                                             journal: bool) -> None:
    """log_fields' fast path (inside lines_held) writes byte for byte what a LogRecord
    through the handler writes; only the timestamp differs."""
    from ikemgr.log import log_fields, setup_logging

    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    setup_logging(fmt, journal=journal)
    log = logging.getLogger("ikemgr.policy")
    fields = {"event": "decision", "identity": "alice@123456", "vips": ["10.1.0.9"], "vlan": 123456,
              "reason": 'quote " and \\ and é'}
    try:
        log_fields(log, logging.WARNING, "decision", dict(fields))  # not held: a LogRecord
        with lines_held():
            log_fields(log, logging.WARNING, "decision", dict(fields))  # held: the fast path
    finally:
        logging.getLogger("ikemgr").handlers[:] = []

    def no_ts(line: str) -> str:
        if fmt != "json":
            return line
        prefix, _, body = line.partition("{")
        d = json.loads("{" + body)
        d.pop("ts")
        return prefix + json.dumps(d)

    slow, fast = out.getvalue().splitlines()
    assert no_ts(slow) == no_ts(fast)
    assert fast.startswith("<4>") == journal


def test_a_record_someone_else_listens_for_takes_the_record_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler of its own on the logger (a test's capture, an operator's extra handler)
    still gets the record: the fast path is only for lines nobody else could see."""
    from ikemgr.log import log_fields, setup_logging

    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    setup_logging("json", journal=False)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    log = logging.getLogger("ikemgr.policy")
    keep = Keep()
    log.addHandler(keep)
    try:
        with lines_held():
            log_fields(log, logging.INFO, "rule added", {"event": "rule-add"})
    finally:
        log.removeHandler(keep)
        logging.getLogger("ikemgr").handlers[:] = []
    assert [r.getMessage() for r in seen] == ["rule added"]
    assert json.loads(out.getvalue())["event"] == "rule-add"  # and the line is written as before


@pytest.mark.parametrize("fields", [
    {},
    {"event": "rule-add", "vip": "10.1.0.12", "vlan": 123456, "table": 1001, "batch": 17},
    {"identity": "a@1; rm -rf /\x00\udcff\u3042\"\\", "vips": ["10.1.0.9", "10.1.0.10"], "n": None},
    {"f": 1.5, "nested": [1, "a", {"z": True}], "other": object()},
    {"msg": "a field named like the line's own key", "x": 1},
    {"ts": 5},
])
def test_a_json_line_is_the_merged_record_encoded(fields: dict[str, object]) -> None:
    """The JSON fast path (head encoded once, fields through the kept encoder) says exactly
    what encoding {"ts", "level", "logger", "msg", **fields} says, in that key order."""
    from ikemgr.log import JournalFormatter

    fmt = JournalFormatter(True)
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        for created in (1764761234.123456, 1764761234.1, 1764761234.0):
            line = fmt.line(created, level, "ikemgr.policy", 'msg "quoted" é', fields)
            want = {"ts": created, "level": logging.getLevelName(level).lower(), "logger": "ikemgr.policy",
                    "msg": 'msg "quoted" é', **{k: (str(v) if k == "other" else v) for k, v in fields.items()}}
            got = json.loads(line)
            assert list(got) == list(want)
            assert got.pop("ts") == pytest.approx(want.pop("ts"), abs=1e-6)
            assert got == want
            assert line.isascii()
