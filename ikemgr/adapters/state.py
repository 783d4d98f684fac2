"""Local state on disk: the one lock, atomic writes, the allow-list's last good snapshot.

``watch``, ``hook`` and ``reconcile`` serialise on one fcntl lock, so two of them never
change the kernel at the same time. The allow-list snapshot lets the gateway keep serving
the last known registrations while the database is down (an outage must not disconnect
every lab user, nor let anyone new in). Every file is replaced atomically (write to a
temp file in the same directory, fsync, rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from datetime import datetime
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from types import TracebackType

from ikemgr.adapters import files
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import AllowList, Sa
from ikemgr.errors import BackendUnavailable, IdentityRejected, Refused

log = logging.getLogger("ikemgr.state")

SNAPSHOT_FILE = "allow-list.snapshot.json"
HOOK_SAS_FILE = "hook-sas.json"
GENERATION_FILE = "kernel.generation"


def atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    files.atomic_write(path, text.encode("utf-8"), mode)


class Lock:
    """An exclusive fcntl lock on a file; released when the process dies (kill -9 included).

    The file stays open between acquisitions: ``watch`` takes the lock once per event
    batch, and an open + close per batch would cost more than the flock itself.
    """

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._held = False

    def acquire(self) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Refused(f"lock {self.path} is held by another ikemgr process "
                                  f"(gave up after {self.timeout:g} s)") from None
                time.sleep(0.002)
        self._held = True

    def release(self) -> None:
        if self._fd is not None and self._held:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._held = False

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class Generation:
    """A stamp every process that changes ikemgr's kernel state refreshes.

    ``watch`` keeps an in-memory index of the rules it owns; when it takes the lock and
    sees another process (``hook``, ``reconcile``) changed the kernel since, it re-reads
    the kernel before trusting its index. The stamp is the file's identity and mtime:
    a hint, not data, so it is written without fsync (a lost stamp after a power cut
    costs nothing: every start reads the kernel anyway).
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / GENERATION_FILE

    def read(self) -> str:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ""
        return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"

    def bump(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(f"{os.getpid()} {time.time_ns()}\n", encoding="utf-8")
        os.replace(tmp, self.path)
        return self.read()


class FileAllowList:
    """A plain-text allow-list (one ``account@NNNNNN`` per line, ``#`` comments).

    For labs and small sites; production reads the registration database. Lines that
    fail the grammar are skipped and logged, never matched loosely.
    """

    def __init__(self, path: Path, grammar: IdentityGrammar) -> None:
        self.path = path
        self.grammar = grammar

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise BackendUnavailable("db", f"{self.path}: {e.strerror}") from None
        pairs: set[tuple[str, int]] = set()
        for n, line in enumerate(raw.split(b"\n"), 1):
            line = line.split(b"#", 1)[0].strip()
            if not line:
                continue
            try:
                ident = self.grammar.parse_vlan_identity(line)
            except IdentityRejected as e:
                log.warning("%s line %d: %s", self.path, n, e.message)
                continue
            assert ident.vlan is not None
            pairs.add((ident.account, ident.vlan))
        return frozenset(pairs)


class SnapshotAllowList:
    """Wraps the real source: saves each good answer, serves the last one during outages."""

    def __init__(self, source: AllowList, state_dir: Path) -> None:
        self.source = source
        self.path = state_dir / SNAPSHOT_FILE
        self.stale = False
        self._last: frozenset[tuple[str, int]] | None = None

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        try:
            pairs = self.source.active_pairs(now)
        except BackendUnavailable as e:
            snap = self._load()
            if snap is None:
                raise
            if not self.stale:
                log.warning("allow-list source down (%s): serving the snapshot of %s", e.message,
                            snap[1])
            self.stale = True
            return snap[0]
        self.stale = False
        if pairs != self._last:
            self._save(pairs, now)
            self._last = pairs
        return pairs

    def _save(self, pairs: frozenset[tuple[str, int]], now: datetime) -> None:
        body = {"taken": now.isoformat(), "pairs": sorted([a, v] for a, v in pairs)}
        try:
            atomic_write(self.path, json.dumps(body, indent=0) + "\n", 0o600)
        except OSError as e:
            log.warning("cannot save the allow-list snapshot %s: %s", self.path, e)

    def _load(self) -> tuple[frozenset[tuple[str, int]], str] | None:
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
            pairs = frozenset((str(a), int(v)) for a, v in body["pairs"])
            return pairs, str(body.get("taken", "?"))
        except (OSError, ValueError, KeyError, TypeError):
            return None


class HookSas:
    """The SAs ``ikemgr hook`` has seen up, persisted between calls (hook has no daemon).

    charon's updown cannot ask charon (list-sas would wait on the very SA being set up),
    so the hook remembers which unique ids hold which VIPs; that is what keeps a VIP's
    rule while a second SA (reauth, ``unique = never``) still holds it.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / HOOK_SAS_FILE

    def load(self) -> dict[str, Sa]:
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s: %s", self.path, e)
            return {}
        out: dict[str, Sa] = {}
        for uid, item in body.items():
            try:
                vips = tuple(IPv4Address(ip_address(v)) for v in item["vips"])
                ident = item["identity"]
                raw: str | bytes | None = (bytes.fromhex(ident["hex"]) if isinstance(ident, dict)
                                           else ident)
                out[str(uid)] = Sa(str(uid), raw, vips, "ESTABLISHED", conn=str(item.get("conn", "")))
            except (KeyError, ValueError, TypeError):
                continue
        return out

    def save(self, sas: dict[str, Sa]) -> None:
        body = {}
        for uid, sa in sas.items():
            ident: object = sa.identity_raw
            if isinstance(ident, bytes):
                ident = {"hex": ident.hex()}
            body[uid] = {"vips": [str(v) for v in sa.vips], "identity": ident, "conn": sa.conn}
        atomic_write(self.path, json.dumps(body) + "\n", 0o600)
