"""``ikemgr hook``: the engine driven by one updown call, and the SA record it keeps between calls.

The hook has no daemon, so what it knows of live SAs is the file ``HookSas`` keeps.
The SA file, the kernel and the generation stamp change together under the policy lock;
how long the hook waits for that lock is the engine's business (``lock_timeout``), not
the command's."""

from __future__ import annotations

import json
import logging
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from ikemgr.config.schema import Config
from ikemgr.core.model import Sa, SaUpdate
from ikemgr.engine.engine import Report
from ikemgr.engine.wiring import build_engine, close_engine
from ikemgr.fsio import atomic_write

log = logging.getLogger("ikemgr.policy")


HOOK_SAS_FILE = "hook-sas.json"


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
        atomic_write(self.path, (json.dumps(body) + "\n").encode("utf-8"), 0o600)


def run_hook(cfg: Config, update: SaUpdate, *, netns: str | None = None, allow_file: Path | None = None,
             lock_file: Path | None = None, lock_timeout: float = 30.0) -> Report | None:
    """One updown call through the engine; waits up to ``lock_timeout`` s for the lock (then Refused).

    A "down" for an SA the hook has no record of still touches its VIPs, so their policy
    goes even if the "up" was seen by another process.
    """
    engine = build_engine(cfg, netns=netns, allow_file=allow_file, lock_file=lock_file)
    assert engine.lock is not None
    engine.lock.timeout = lock_timeout
    try:
        with engine.hold():  # the SA file, the kernel and the generation change together
            store = HookSas(cfg.policy.state_dir)
            engine.replace_sas(store.load().values())
            engine.refresh_allow()
            report = engine.events([update], touch=() if update.present else update.sa.vips)
            store.save(dict(engine.sas))
    finally:
        close_engine(engine)
    return report
