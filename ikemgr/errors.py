"""One user-facing error family with stable codes.

Every failure an operator can cause or fix is an ``IkemgrError``; the CLI prints its
one-line message (or its JSON form) and exits with its ``exit_code``. Anything else
that escapes is a bug and is allowed to show a traceback.

Exit codes (documented in docs/cli.md):
  0  success / nothing to do
  1  the operation ran and failed (apply, check, probe rejected)
  2  bad input: config, arguments, identity
  3  a backend is unavailable (vici, db, ldap, radius, netlink, firewall)
  4  refused by a safety valve (mass revocation without --force, lock held)
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_REFUSED = 4


class IkemgrError(Exception):
    """Base of every expected, user-facing error."""

    code = "error"
    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def lines(self) -> list[str]:
        return [self.message]

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file: the field path, its YAML line (if known), the text."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path} (line {self.line})" if self.line else (self.path or "<config>")
        return f"{where}: {self.message}"


class ConfigError(IkemgrError):
    """The config file is missing, unreadable, not YAML, or fails validation."""

    code = "config"
    exit_code = EXIT_INPUT

    def __init__(self, problems: list[ConfigProblem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__("; ".join(str(p) for p in problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "source": self.source,
            "problems": [
                {"path": p.path, "line": p.line, "message": p.message} for p in self.problems
            ],
        }


class UsageError(IkemgrError):
    code = "usage"
    exit_code = EXIT_INPUT


class IdentityRejected(IkemgrError):
    """An identity (from charon, an updown env or an allow-list source) fails the grammar."""

    code = "identity"
    exit_code = EXIT_INPUT

    def __init__(self, reason: str, shown: str) -> None:
        self.reason = reason
        self.shown = shown
        super().__init__(f"identity {shown} rejected: {reason}")


class BackendUnavailable(IkemgrError):
    """vici, db, ldap, radius, netlink or firewall could not be reached or answered an error."""

    code = "unavailable"
    exit_code = EXIT_UNAVAILABLE

    def __init__(self, backend: str, detail: str) -> None:
        self.backend = backend
        super().__init__(f"{backend} unavailable: {detail}")


class ApplyFailed(IkemgrError):
    code = "apply"
    exit_code = EXIT_FAILED


class CheckFailed(IkemgrError):
    code = "check"
    exit_code = EXIT_FAILED


class Refused(IkemgrError):
    """A safety valve said no (mass revocation, lock held by another process)."""

    code = "refused"
    exit_code = EXIT_REFUSED

