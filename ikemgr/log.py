"""Logging for the daemons and hooks: one line per record on stderr, text or JSON.

journald and syslog pick the lines up from the unit's stderr; structured fields go in
``extra={"fields": …}`` and come out as key=value pairs or JSON keys.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

log = logging.getLogger("ikemgr.policy")
_ROOT = logging.getLogger("ikemgr")


#: syslog priorities (RFC 5424) of the Python levels
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


#: one encoder for every line: ``json.dumps`` with any option, and ``JSONEncoder.encode``
#: itself, build a new C encoder per call. This is ``JSONEncoder(default=str,
#: ensure_ascii=True)``'s, made once, without the circular-reference check (the fields are
#: flat values built here), so one serves every thread.
_JSON = json.JSONEncoder(default=str, ensure_ascii=True)
_C_ENCODER = (c_make_encoder(None, str, encode_basestring_ascii, None, ": ", ", ", False, False, True)
              if c_make_encoder is not None else None)


def _encode(value: Any) -> str:
    if _C_ENCODER is None:  # pragma: no cover - CPython has the C encoder
        return _JSON.encode(value)
    return "".join(_C_ENCODER(value, 0))


def priority_of(levelno: int) -> int:
    for lvl in sorted(PRIORITY, reverse=True):
        if levelno >= lvl:
            return PRIORITY[lvl]
    return 7


class JournalFormatter(logging.Formatter):
    """One line per record; records with ``fields`` become key=value or JSON.

    With ``journal`` every line starts with its syslog priority in sd-daemon form
    (``<4>`` for a warning): journald reads that prefix from a unit's stderr
    (SyslogLevelPrefix= is on by default), so ``journalctl -p warning`` shows exactly
    the warnings and errors.
    """

    def __init__(self, as_json: bool, journal: bool = False) -> None:
        super().__init__()
        self.as_json = as_json
        self.journal = journal
        # (level, logger, message) → the JSON text between "ts" and the fields
        self._heads: dict[tuple[int, str, str], str] = {}

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record.created, record.levelno, record.name, record.getMessage(),
                         getattr(record, "fields", None) or {})

    def line(self, created: float, levelno: int, name: str, msg: str, fields: Mapping[str, Any]) -> str:
        """The one line of a record (``format``) or of ``log_fields``'s fast path: the same bytes."""
        if self.as_json:
            line = self._json(created, levelno, name, msg, fields)
        else:
            kv = " ".join(f"{k}={_encode(v) if not isinstance(v, int) else v}"
                          for k, v in fields.items())
            line = f"{logging.getLevelName(levelno).lower()} {name}: {msg}" + (f" {kv}" if kv else "")
        return f"<{priority_of(levelno)}>{line}" if self.journal else line

    def _json(self, created: float, levelno: int, name: str, msg: str, fields: Mapping[str, Any]) -> str:
        """``{"ts", "level", "logger", "msg", **fields}`` as JSON, ``ts`` with six decimals.

        The text from "level" to "msg" is encoded once per (level, logger, message) and the
        fields through the kept C encoder (``_encode``): the watch writes one or two lines
        per connect, and the merged dict, its encoder and ``round`` were half of a line's
        cost."""
        if not _RESERVED.isdisjoint(fields):  # a field named like a line's own key replaces it
            level = logging.getLevelName(levelno).lower()
            return _encode({"ts": round(created, 6), "level": level, "logger": name, "msg": msg, **fields})
        key = (levelno, name, msg)
        head = self._heads.get(key)
        if head is None:
            level = logging.getLevelName(levelno).lower()
            head = ", " + _encode({"level": level, "logger": name, "msg": msg})[1:-1]
            if len(self._heads) < _HEADS_KEPT:  # a message with values in it is not kept
                self._heads[key] = head
        if not fields:
            return f'{{"ts": {created:.6f}{head}}}'
        return f'{{"ts": {created:.6f}{head}, {_encode(fields)[1:]}'


#: the keys every JSON line starts with; a field of the same name takes the slow path
_RESERVED = frozenset({"ts", "level", "logger", "msg"})
_HEADS_KEPT = 512


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, one line per record; inside ``held()`` the lines wait and go out in one write.

    An event batch logs a line per decision and per rule change; written one by one, each
    is a ``write`` syscall and a flush. ``watch`` holds the lines for one batch (at most
    1,024 events, a few milliseconds) and writes them when the batch is applied.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self._held: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is None:
            super().emit(record)
            return
        try:
            self._held.append(self.format(record) + self.terminator)
        except Exception:  # noqa: BLE001 - logging's own contract: a bad record is reported, not raised
            self.handleError(record)

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._held is not None:  # nested: the outer block writes
            yield
            return
        self._held = []
        try:
            yield
        finally:
            lines, self._held = self._held, None
            if lines:
                self.acquire()
                try:
                    self.stream.write("".join(lines))
                    self.flush()
                finally:
                    self.release()


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, msg, extra={"fields": fields})``, and the same line, without the
    ``LogRecord`` and handler dispatch when the lines are held.

    Inside ``lines_held`` (an engine pass) the line goes straight into the held list:
    a record cost ~4 µs of the ~10 µs a decision line took, paid twice per connect on the
    event path. Only when nothing else could see the record: ``logger`` is a direct child
    of ``ikemgr`` with no handlers and no filters of its own, and ``setup_logging``'s
    handler is the only one on ``ikemgr``.
    """
    hs = _ROOT.handlers
    h = hs[0] if len(hs) == 1 else None
    if (isinstance(h, LineHandler) and h._held is not None and logger.isEnabledFor(level)
            and level >= h.level and not logger.handlers and not logger.filters
            and logger.parent is _ROOT and isinstance(h.formatter, JournalFormatter)):
        h._held.append(h.formatter.line(time.time(), level, logger.name, msg, fields) + h.terminator)
        return
    logger.log(level, msg, extra={"fields": fields})


@contextmanager
def lines_held() -> Iterator[None]:
    """Hold the log lines of one unit of work (an event batch) and write them together."""
    handlers = [h for h in _ROOT.handlers if isinstance(h, LineHandler)]
    if not handlers:
        yield
        return
    with handlers[0].held():
        yield


def setup_logging(fmt: str = "text", level: int | str = logging.INFO, journal: bool | None = None) -> None:
    """stderr, one line per record: journald/syslog pick it up from the unit's stderr.

    ``journal`` defaults to whether stderr is systemd's journal stream (systemd sets
    JOURNAL_STREAM to its device:inode for a unit whose stderr goes to the journal).
    """
    if isinstance(level, str):
        level = LEVELS[level]
    if journal is None:
        journal = _stderr_is_journal()
    # no record carries a thread, process or source line (the formatter prints none of
    # them): the logging HOWTO's "Optimization" settings, a quarter of a record's cost
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]  # no caller lookup per record
    handler = LineHandler()
    handler.setFormatter(JournalFormatter(fmt == "json", journal))
    root = _ROOT
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def log_event(msg: str, **fields: Any) -> None:
    log_fields(log, logging.INFO, msg, fields)


def _stderr_is_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))
