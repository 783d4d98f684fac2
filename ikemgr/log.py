"""Logging for the daemons and hooks: one line per record on stderr, text or JSON.

journald and syslog pick the lines up from the unit's stderr; structured fields go in
``extra={"fields": …}`` and come out as key=value pairs or JSON keys.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger("ikemgr.policy")


#: syslog priorities (RFC 5424) of the Python levels
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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

    def format(self, record: logging.LogRecord) -> str:
        line = self._line(record)
        return f"<{priority_of(record.levelno)}>{line}" if self.journal else line

    def _line(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        if self.as_json:
            body = {"ts": round(record.created, 6), "level": record.levelname.lower(),
                    "logger": record.name, "msg": record.getMessage(), **fields}
            return json.dumps(body, default=str, ensure_ascii=True)
        kv = " ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=True) if not isinstance(v, int) else v}"
                      for k, v in fields.items())
        return f"{record.levelname.lower()} {record.name}: {record.getMessage()}" + (f" {kv}" if kv else "")


def setup_logging(fmt: str = "text", level: int | str = logging.INFO, journal: bool | None = None) -> None:
    """stderr, one line per record: journald/syslog pick it up from the unit's stderr.

    ``journal`` defaults to whether stderr is systemd's journal stream (systemd sets
    JOURNAL_STREAM to its device:inode for a unit whose stderr goes to the journal).
    """
    if isinstance(level, str):
        level = LEVELS[level]
    if journal is None:
        journal = _stderr_is_journal()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(fmt == "json", journal))
    root = logging.getLogger("ikemgr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def log_event(msg: str, **fields: Any) -> None:
    log.info(msg, extra={"fields": fields})


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
