"""Jinja2 templates from ``templates/`` (StrictUndefined: a missing value is an error).

Templates stay dumb: every computed value (SNAT address, table ids, priorities) comes
from Python. The directory is ``templates/`` in a source checkout and
``ikemgr/_templates`` in an installed wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

_PKG = Path(__file__).resolve().parent.parent


def template_dir() -> Path:
    for candidate in (_PKG / "_templates", _PKG.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("ikemgr templates directory not found")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


@dataclass(frozen=True)
class Output:
    """One rendered file: its path below the output root, its text and its mode."""

    path: str
    text: str
    mode: int = 0o644
    secret: bool = False
    #: owning group (e.g. "freerad" for FreeRADIUS files holding a secret); None = leave as is
    group: str | None = None
    #: a symlink to this absolute path instead of a file (``text`` stays empty), e.g. the
    #: CRL under its OpenSSL hash name in FreeRADIUS's ``ca_path``
    link: str | None = None

    def __post_init__(self) -> None:
        if self.path.startswith("/") or ".." in Path(self.path).parts:
            raise ValueError(f"output path must be relative and inside the root: {self.path}")
        # a secret may be group-readable only when the group is named (0640 root:freerad)
        if self.secret and self.mode & (0o007 if self.group else 0o077):
            raise ValueError(f"{self.path} holds a secret but mode {self.mode:o} lets others read it")
        if self.link is not None and (self.text or not self.link.startswith("/")):
            raise ValueError(f"{self.path}: a link has no text and points to an absolute path")




#: no path, host name or time in it: rendering the same config anywhere gives the same bytes,
#: so a daemon is restarted only when its settings really changed
HEADER = "rendered by ikemgr; changes here are overwritten by `ikemgr render`"
