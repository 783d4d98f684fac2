"""Logging for the daemons and hooks: one line per record on stderr, text or JSON.

journald and syslog pick the lines up from the unit's stderr; structured fields go in
``extra={"fields": …}`` and come out as key=value pairs or JSON keys.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

log = logging.getLogger("ikemgr.policy")


class JournalFormatter(logging.Formatter):
    """One line per record; records with ``fields`` become key=value or JSON."""

    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        if self.as_json:
            body = {"ts": round(record.created, 6), "level": record.levelname.lower(),
                    "logger": record.name, "msg": record.getMessage(), **fields}
            return json.dumps(body, default=str, ensure_ascii=True)
        kv = " ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=True) if not isinstance(v, int) else v}"
                      for k, v in fields.items())
        return f"{record.levelname.lower()} {record.name}: {record.getMessage()}" + (f" {kv}" if kv else "")


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """stderr, one line per record: journald/syslog pick it up from the unit's stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(fmt == "json"))
    root = logging.getLogger("ikemgr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def log_event(msg: str, **fields: Any) -> None:
    log.info(msg, extra={"fields": fields})
