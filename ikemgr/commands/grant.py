"""`ikemgr grant add|remove|list`: hand-made grants (source "manual"), audited like sync's.

The store (SQLAlchemy) is imported inside the command bodies: every ikemgr command loads
this module at start-up and most of them never touch the database.

Sync never touches manual grants, and a manual change to a synced source's grant is
overwritten by the next sync, so by default these commands work on source "manual".
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.config.schema import Config
from ikemgr.core.grants import MANUAL, Grant, as_utc, check_note
from ikemgr.core.identity import Identity, IdentityGrammar
from ikemgr.errors import UsageError
from ikemgr.result import Result, TableData

SourceOpt = typer.Option(MANUAL, "--source", help="Source the grant belongs to.")


def grammar(cfg: Config) -> IdentityGrammar:
    return IdentityGrammar.of(cfg)


def parse_time(value: str | None, what: str) -> datetime | None:
    try:
        return as_utc(value, what)
    except ValueError as e:
        raise UsageError(f"--{what.replace('_', '-')}: {e}") from None


def vlan_identity(cfg: Config, value: str, allow_unknown: bool) -> Identity:
    ident = grammar(cfg).parse_vlan_identity(value)
    assert ident.vlan is not None
    if not allow_unknown and cfg.vlan(ident.vlan) is None:
        raise UsageError(f"VLAN {ident.vlan} is not configured on this gateway "
                         "(use --allow-unknown-vlan for a shared database)")
    return ident


def grant_row(g: Grant, now: datetime) -> tuple[object, ...]:
    return (f"{g.account}@{g.vlan}", g.source, g.valid_from.isoformat() if g.valid_from else "",
            g.valid_until.isoformat() if g.valid_until else "", "yes" if g.suspended else "",
            "yes" if g.active(now) else "no", g.note)


def grant_dict(g: Grant, now: datetime) -> dict[str, object]:
    return {"identity": f"{g.account}@{g.vlan}", "account": g.account, "vlan": g.vlan, "source": g.source,
            "valid_from": g.valid_from.isoformat() if g.valid_from else None,
            "valid_until": g.valid_until.isoformat() if g.valid_until else None,
            "suspended": g.suspended, "active": g.active(now), "note": g.note}


GRANT_COLUMNS = ("identity", "source", "valid_from", "valid_until", "suspended", "active", "note")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="Add, remove and list allow-list grants (account@VLAN).")
    app.add_typer(sub, name="grant")

    @sub.command("add")
    def add(
        identity: str = typer.Argument(..., help="account@NNNNNN"),
        valid_from: str = typer.Option(None, "--from", help="ISO 8601 start (default: now, open)."),
        valid_until: str = typer.Option(None, "--until", help="ISO 8601 end, exclusive (default: none)."),
        note: str = typer.Option("", "--note", help="Free text, up to 200 characters."),
        source: str = SourceOpt,
        allow_unknown_vlan: bool = typer.Option(False, "--allow-unknown-vlan",
                                                help="Allow a VLAN this gateway does not configure."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Grant account@VLAN (or change the terms of an existing grant)."""

        def body() -> Result:
            from ikemgr.allowlist.store import current_actor, open_store

            cfg = load_config(config)
            ident = vlan_identity(cfg, identity, allow_unknown_vlan)
            assert ident.vlan is not None
            vf, vu = parse_time(valid_from, "from"), parse_time(valid_until, "until")
            if vf is not None and vu is not None and vu <= vf:
                raise UsageError("--until must be after --from")
            try:
                text = check_note(note)
            except ValueError as e:
                raise UsageError(f"--note: {e}") from None
            now = datetime.now(UTC)
            store = open_store(cfg)
            try:
                what, g = store.put_grant(Grant(ident.account, ident.vlan, source, vf, vu, text),
                                          current_actor(), now,
                                          [(v.number, v.description) for v in cfg.vlans])
            finally:
                store.close()
            return Result("grant add", data={"result": what, "grant": grant_dict(g, now)},
                          messages=(f"{ident}: {what} (source {source})",))

        run("grant add", as_json, body)

    @sub.command("remove")
    def remove(
        identity: str = typer.Argument(..., help="account@NNNNNN"),
        source: str = SourceOpt,
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Remove a grant (from source "manual" unless --source is given)."""

        def body() -> Result:
            from ikemgr.allowlist.store import current_actor, open_store
            from ikemgr.allowlist.sync import journal_revocations

            cfg = load_config(config)
            ident = vlan_identity(cfg, identity, allow_unknown=True)
            assert ident.vlan is not None
            now = datetime.now(UTC)
            store = open_store(cfg)
            try:
                g = store.remove_grant(ident.account, ident.vlan, source, current_actor(), now)
                journal_revocations(cfg, store, [g.pair])
            finally:
                store.close()
            msgs = [f"{ident}: removed (source {source})"]
            if source != MANUAL and any(s.name == source for s in cfg.sync.sources):
                msgs.append(f"note: the next sync restores it if source {source} still lists it")
            return Result("grant remove", data={"removed": grant_dict(g, now)}, messages=tuple(msgs))

        run("grant remove", as_json, body)

    @sub.command("list")
    def list_(
        account: str = typer.Option(None, "--account", help="Only this account."),
        vlan: int = typer.Option(None, "--vlan", help="Only this VLAN number."),
        source: str = typer.Option(None, "--source", help="Only this source."),
        active: bool = typer.Option(False, "--active", help="Only grants in force now."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """List grants, with whether each is in force now."""

        def body() -> Result:
            from ikemgr.allowlist.store import open_store

            cfg = load_config(config)
            if account is not None:
                ident = grammar(cfg).parse(account)
                if ident.vlan is not None:
                    raise UsageError("--account takes an account without @VLAN (use --vlan)")
            now = datetime.now(UTC)
            store = open_store(cfg)
            try:
                gs = store.grants(sources=None if source is None else [source], account=account, vlan=vlan,
                                  active_at=now if active else None)
            finally:
                store.close()
            live = sum(1 for g in gs if g.active(now))
            return Result("grant list", data={"grants": [grant_dict(g, now) for g in gs], "count": len(gs),
                                              "active": live},
                          messages=(f"{len(gs)} grants, {live} in force now",),
                          tables=(TableData("grants", GRANT_COLUMNS, tuple(grant_row(g, now) for g in gs)),))

        run("grant list", as_json, body)
