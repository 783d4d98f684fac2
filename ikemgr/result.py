"""Commands return a Result; one renderer prints it (human text via rich, or --json)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ikemgr.errors import EXIT_OK

if TYPE_CHECKING:  # rich only renders for humans: --json (scripts, sync from a timer) never loads it
    from rich.console import Console


@dataclass(frozen=True)
class TableData:
    """A table: rich text for humans; in --json output its rows are dicts keyed by the columns."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Result:
    command: str
    data: dict[str, Any] = field(default_factory=dict)
    messages: tuple[str, ...] = ()
    tables: tuple[TableData, ...] = ()
    errors: tuple[str, ...] = ()
    exit_code: int = EXIT_OK
    #: valid but probably wrong (``field (line N): message``); printed on stderr, exit code unchanged
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "ok": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "data": self.data,
            "messages": list(self.messages),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "tables": [{"title": t.title, "rows": [dict(zip(t.columns, row, strict=True)) for row in t.rows]}
                       for t in self.tables],
        }


def error_json(command: str, exit_code: int, error: dict[str, Any]) -> dict[str, Any]:
    """The --json payload of a command that failed with an IkemgrError (same top-level keys)."""
    return {"command": command, "ok": False, "exit_code": exit_code, "error": error}


def _jsonable(o: Any) -> Any:
    return str(o)


def render(result: Result, as_json: bool, console: Console | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=_jsonable) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    # a pipe or a log file gets full-width tables, not rich's 80-column default
    out = console or Console(highlight=False, soft_wrap=True,
                             width=None if sys.stdout.isatty() else 200)
    for msg in result.messages:
        out.print(msg, markup=False)
    for t in result.tables:
        table = Table(title=t.title, title_justify="left")
        for c in t.columns:
            table.add_column(c)
        for row in t.rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        out.print(table)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for w in result.warnings:
        err.print(f"warning: {w}", markup=False)
    for e in result.errors:
        err.print(f"error: {e}", markup=False)
