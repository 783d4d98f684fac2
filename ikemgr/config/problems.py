"""Cross-field checks that report every problem they find, not the first one.

A pydantic validator that raises ``ValueError`` stops at its first complaint, so an
operator fixing a file sees one problem per run. A check here collects
``(location, message)`` pairs and raises them together as one ``ValidationError``;
pydantic merges its line errors into the document's (prefixing the location of the
field or model the check runs on), and ``config.load`` maps each location to its YAML
line. The error type ``cross_check`` tells ``load`` that the location is exact and the
message carries no field path of its own.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

#: the pydantic error type of a problem raised by ``Problems``
CROSS_CHECK = "cross_check"

Loc = tuple[str | int, ...]


class Problems:
    """Collects the problems of one validator; ``raise_any`` raises them all at once."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.items: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((loc, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_any(self, value: Any = None) -> None:
        if not self.items:
            return
        details = [InitErrorDetails(type=PydanticCustomError(CROSS_CHECK, "{message}", {"message": msg}),
                                    loc=loc, input=value)
                   for loc, msg in self.items]
        raise ValidationError.from_exception_data(self.title, details)
