"""The engine as the commands use it: its backend, allow-list, lock, generation and flusher."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ikemgr.adapters.conntrack import ConntrackFlusher
from ikemgr.adapters.kernel.netns import InNetns
from ikemgr.adapters.policy.base import PolicyBackend
from ikemgr.adapters.policy.marks import MarksBackend
from ikemgr.adapters.policy.rules import RulesBackend
from ikemgr.allowlist.live import open_allow_list
from ikemgr.config.schema import Config
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import AllowList
from ikemgr.engine.coordination import Generation, Lock
from ikemgr.engine.engine import Engine

if TYPE_CHECKING:  # prometheus_client costs ~0.05 s of CPU at every command start
    from ikemgr.metrics import Metrics

log = logging.getLogger("ikemgr.policy")


def make_backend(cfg: Config, netns: str | None) -> PolicyBackend:
    ex = InNetns(netns)
    return RulesBackend(cfg, ex) if cfg.policy.backend == "rules" else MarksBackend(cfg, ex)


def build_engine(cfg: Config, *, netns: str | None = None, allow_file: Path | None = None,
                 lock_file: Path | None = None, metrics: Metrics | None = None,
                 flush_conntrack: bool = True, long_lived: bool = False,
                 allow: AllowList | None = None) -> Engine:
    """The engine as the commands use it: backend, allow-list + snapshot, lock, generation.

    ``long_lived`` (watch): the engine keeps its kernel index between batches and parses
    conntrack dumps in a child process, away from the event thread. ``allow`` replaces the
    allow-list and its snapshot (a scoped read, ``LivePairs``).
    """
    if allow is None:
        allow = open_allow_list(cfg, IdentityGrammar.of(cfg), allow_file)
    return Engine(
        cfg, make_backend(cfg, netns), allow,
        lock=Lock(lock_file or cfg.policy.lock_file), generation=Generation(cfg.policy.state_dir),
        flusher=ConntrackFlusher(netns, flush_conntrack, out_of_process=long_lived,
                                 on_error=(lambda kind, n: metrics.error(f"conntrack-{kind}", n))
                                 if metrics is not None else None,
                                 # watch: flush in a lull of the event stream (at most 2 s late)
                                 quiet=0.05 if long_lived else 0.0),
        metrics=metrics,
        long_lived=long_lived)


def close_engine(engine: Engine) -> None:
    if engine.lock is not None:
        engine.lock.close()
    if engine.flusher is not None:
        engine.flusher.wait_idle(2.0)
        engine.flusher.close()
    engine.backend.close()
