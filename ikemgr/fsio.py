"""Files: the one atomic write, the one lock, and reading secrets the config names.

Every file ikemgr writes is replaced atomically (a temp file in the same directory,
fsync, rename), so a crash never leaves half a file; every lock is an fcntl lock that
the kernel releases when its process dies (kill -9 included)."""

from __future__ import annotations

import fcntl
import grp
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from ikemgr.errors import ApplyFailed, BackendUnavailable, ConfigError, ConfigProblem, Refused


def group_id(group: str | None) -> int:
    if group is None:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ApplyFailed(f"group {group} does not exist (is the package that owns it installed?)") from None


def atomic_write(target: Path, data: bytes, mode: int, group: str | None = None) -> None:
    """Write via a temp file + rename: a symlink in the way is replaced, never followed."""
    gid = group_id(group)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if gid != -1:
            os.fchown(fd, -1, gid)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_symlink(target: Path, points_to: str) -> None:
    """Make ``target`` a symlink to ``points_to`` via a temp link + rename (whatever was
    there is replaced in one step, never followed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.lnk")
    tmp.unlink(missing_ok=True)
    os.symlink(points_to, tmp)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class SecretUnreadable(Exception):
    """A secret file that cannot be used; the message names the file and why."""


def secret_line(path: Path) -> str:
    """The first line of a secret file (a trailing newline is not part of the secret)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretUnreadable(f"{path}: no such file") from None
    except PermissionError:
        raise SecretUnreadable(f"{path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SecretUnreadable(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    value = text.splitlines()[0] if text else ""
    if not value:
        raise SecretUnreadable(f"{path} is empty")
    return value


def config_secret(path: Path, field: str) -> str:
    """A secret file the config names; an unusable one is a config error on ``field``."""
    try:
        return secret_line(path)
    except SecretUnreadable as e:
        raise ConfigError([ConfigProblem(field, None, str(e))]) from None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ApplyFailed(f"cannot read {path}: {e.strerror}") from None


def replace_text(path: Path, text: str, mode: int = 0o644) -> bool:
    """Temp file + rename in the same directory; unchanged content is not rewritten."""
    if read_text(path) == text:
        return False
    try:
        atomic_write(path, text.encode(), mode)
    except OSError as e:
        raise ApplyFailed(f"cannot write {path}: {e.strerror}") from None
    return True


class Lock:
    """An exclusive fcntl lock on a file; released when the process dies (kill -9 included).

    The file stays open between acquisitions: ``watch`` takes the lock once per event
    batch, and an open + close per batch would cost more than the flock itself.
    """

    def __init__(self, path: Path, timeout: float = 30.0, busy: str = "") -> None:
        self.path = path
        self.timeout = timeout
        #: the refusal when the wait runs out ({path} and {timeout} are filled in)
        self.busy = busy or "lock {path} is held by another ikemgr process (gave up after {timeout:g} s)"
        self.fd: int | None = None
        self._held = False

    def acquire(self) -> None:
        if self.fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise BackendUnavailable("lock", f"{self.path}: {e.strerror}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Refused(self.busy.format(path=self.path, timeout=self.timeout)) from None
                time.sleep(0.002)
        self._held = True

    def release(self) -> None:
        if self.fd is not None and self._held:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self._held = False

    def close(self) -> None:
        self.release()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


@contextmanager
def held(path: Path, timeout: float, busy: str = "") -> Iterator[None]:
    """Hold ``Lock(path)`` for one block (a sync, a migration); the file names the holder's pid."""
    lock = Lock(path, timeout, busy)
    try:
        lock.acquire()
        assert lock.fd is not None
        os.ftruncate(lock.fd, 0)
        os.write(lock.fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        lock.close()
