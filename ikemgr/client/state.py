"""State records: one JSON file per environment under a root-only directory.

``down`` must work after anything: a crashed charon, a half-finished ``up``, a reboot of
ikemgr itself. So the record is written *before* the first kernel object exists and
rewritten as each is made; ``down`` undoes what the record and the kernel show.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ikemgr.client.model import check_name
from ikemgr.errors import BackendUnavailable, UsageError
from ikemgr.fsio import atomic_write, held

DEFAULT_STATE_DIR = Path("/run/ikemgr/client")
STATE_ENV = "IKEMGR_CLIENT_STATE_DIR"


def state_dir(option: Path | None = None) -> Path:
    d = option or Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)
    # charon runs the environment's updown script from here through /bin/sh: plain paths only
    if not d.is_absolute() or not re.fullmatch(r"[A-Za-z0-9/._-]{1,200}", str(d)) or ".." in d.parts:
        raise UsageError(f"--state-dir: {ascii(str(d))[:60]} must be an absolute path of "
                         "A-Z a-z 0-9 / . _ -")
    return d


@dataclass
class Record:
    name: str
    owner_uid: int
    owner_gid: int
    host_netns: int  # inode of the namespace `up` ran in: the host side lives there
    uplink: str  # the /30
    gateway: str
    connection: str
    child: str
    auth: str
    identity: str
    ipsec: str  # libipsec | kernel
    phase: str = "starting"  # starting → up
    vip: str | None = None
    dns: list[str] = field(default_factory=list)
    started: float = 0.0
    pids: dict[str, int] = field(default_factory=dict)
    forwarding_was: str | None = None  # set when this record switched ip_forward on

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Store:
    """The directory of records (0700, root). Each write is atomic (rename)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One ``up``/``down`` at a time: two ``up`` must not pick the same /30 or name."""
        self.ensure()
        with held(self.dir / ".lock", math.inf):  # waits as long as the other ``up`` takes
            yield

    def path(self, name: str) -> Path:
        return self.dir / f"{check_name(name)}.json"

    def workdir(self, name: str) -> Path:
        return self.dir / check_name(name)

    def write(self, rec: Record) -> None:
        self.ensure()
        atomic_write(self.path(rec.name), (json.dumps(rec.to_json(), indent=2) + "\n").encode(), 0o600)

    def read(self, name: str) -> Record | None:
        p = self.path(name)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise BackendUnavailable("client state", f"{p}: {e}") from None
        try:
            return Record(**data)
        except TypeError as e:
            raise BackendUnavailable("client state", f"{p}: {e}") from None

    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.json") if not p.name.startswith("."))

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
