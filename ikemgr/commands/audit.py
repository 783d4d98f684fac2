"""`ikemgr audit`: who changed which grant when, newest first, with filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.commands.grant import grammar, parse_time
from ikemgr.errors import UsageError
from ikemgr.result import Result, TableData


def _after(action: str, after: dict[str, Any] | None) -> str:
    """A short human summary of the state after the change."""
    if after is None:
        return ""
    if not action.startswith("grant."):
        return ", ".join(f"{k}={v}" for k, v in sorted(after.items()) if v)
    if after.get("suspended"):
        return "suspended"
    return f"until {after['valid_until']}" if after.get("valid_until") else "open"


def register(app: typer.Typer) -> None:
    @app.command("audit")
    def audit(
        account: str = typer.Option(None, "--account", help="Only this account."),
        vlan: int = typer.Option(None, "--vlan", help="Only this VLAN number."),
        actor: str = typer.Option(None, "--actor", help="Only this actor (user@host or sync@host)."),
        action: str = typer.Option(None, "--action", help="grant.add, grant.remove, grant.expire, "
                                   "grant.update, grant.suspend, grant.resume."),
        source: str = typer.Option(None, "--source", help="Only this source."),
        since: str = typer.Option(None, "--since", help="ISO 8601; entries at or after."),
        until: str = typer.Option(None, "--until", help="ISO 8601; entries before."),
        limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="At most this many entries."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Show the audit log of the allow-list (filters are exact matches, combined with AND)."""

        def body() -> Result:
            from ikemgr.allowlist.store import open_store

            cfg = load_config(config)
            if account is not None and grammar(cfg).parse(account).vlan is not None:
                raise UsageError("--account takes an account without @VLAN (use --vlan)")
            store = open_store(cfg)
            try:
                rows = store.audit(account=account, vlan=vlan, actor=actor, action=action, source=source,
                                   since=parse_time(since, "since"), until=parse_time(until, "until"),
                                   limit=limit)
            finally:
                store.close()
            data = [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
                     "account": r.account, "vlan": r.vlan, "source": r.source, "before": r.before,
                     "after": r.after} for r in rows]
            table = TableData("audit log", ("at", "actor", "action", "identity", "source", "after"), tuple(
                (r.at.isoformat(timespec="seconds"), r.actor, r.action,
                 f"{r.account}@{r.vlan}" if r.account else (f"VLAN {r.vlan}" if r.vlan else ""),
                 r.source or "", _after(r.action, r.after)) for r in rows))
            return Result("audit", data={"entries": data, "count": len(data)},
                          messages=(f"{len(data)} entries",), tables=(table,))

        run("audit", as_json, body)
