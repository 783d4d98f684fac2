"""`ikemgr vlan list|show`: lab VLANs as configured here and as known to the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.commands.grant import GRANT_COLUMNS, grant_dict, grant_row
from ikemgr.core.grants import check_note
from ikemgr.errors import UsageError
from ikemgr.result import Result, TableData


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="Lab VLANs and their grants.")
    app.add_typer(sub, name="vlan")

    @sub.command("list")
    def list_(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
        """Every VLAN in the config or the store, with its table, SNAT and grant counts."""

        def body() -> Result:
            from ikemgr.allowlist.store import open_store

            cfg = load_config(config)
            now = datetime.now(UTC)
            store = open_store(cfg)
            try:
                known = {v.number: v for v in store.vlans(now)}
            finally:
                store.close()
            rows = []
            for n in sorted(set(known) | {v.number for v in cfg.vlans}):
                c, s = cfg.vlan(n), known.get(n)
                rows.append({
                    "number": n, "configured": c is not None,
                    "name": (s.name if s and s.name else (c.description if c else "")),
                    "interface": c.interface if c else None, "table": c.table_label if c else None,
                    "snat": str(c.snat_address) if c else None,
                    "owner": s.owner if s else "", "contact": s.contact if s else "",
                    "grants": s.grants if s else 0, "active": s.active if s else 0,
                })
            cols = ("number", "name", "configured", "interface", "table", "snat", "grants", "active")
            return Result("vlan list", data={"vlans": rows},
                          tables=(TableData("lab VLANs", cols, tuple(
                              tuple(("yes" if r[c] else "no") if c == "configured" else r[c] for c in cols)
                              for r in rows)),))

        run("vlan list", as_json, body)

    @sub.command("set")
    def set_(
        number: int = typer.Argument(..., min=1, max=999_999_999, help="VLAN management number"),
        name: str = typer.Option(None, "--name", help="Lab name, up to 200 characters."),
        owner: str = typer.Option(None, "--owner", help="Responsible person, up to 200 characters."),
        contact: str = typer.Option(None, "--contact", help="Contact address, up to 200 characters."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Record a VLAN's name, owner and contact in the store (audited)."""

        def body() -> Result:
            from ikemgr.allowlist.store import current_actor, open_store

            cfg = load_config(config)
            changes = {k: v for k, v in (("name", name), ("owner", owner), ("contact", contact))
                       if v is not None}
            for k, v in changes.items():
                try:
                    check_note(v)
                except ValueError:
                    raise UsageError(f"--{k}: longer than 200 characters or contains control "
                                     "characters") from None
            store = open_store(cfg)
            try:
                info = store.update_vlan(number, changes, current_actor(), datetime.now(UTC))
            finally:
                store.close()
            data = {"number": info.number, "name": info.name, "owner": info.owner, "contact": info.contact}
            return Result("vlan set", data=data, messages=(f"VLAN {number}: " + ", ".join(
                f"{k}={v!r}" for k, v in data.items() if k != "number"),))

        run("vlan set", as_json, body)

    @sub.command("show")
    def show(number: int = typer.Argument(..., help="VLAN management number"), config: Path = ConfigOpt,
             as_json: bool = JsonOpt) -> None:
        """One VLAN: its config, owner/contact and every grant."""

        def body() -> Result:
            from ikemgr.allowlist.store import open_store

            cfg = load_config(config)
            now = datetime.now(UTC)
            store = open_store(cfg)
            try:
                info = next((v for v in store.vlans(now) if v.number == number), None)
                gs = store.grants(vlan=number)
            finally:
                store.close()
            c = cfg.vlan(number)
            if c is None and info is None:
                raise UsageError(f"VLAN {number} is neither configured nor in the store")
            data = {
                "number": number, "configured": c is not None,
                "name": (info.name if info and info.name else (c.description if c else "")),
                "owner": info.owner if info else "", "contact": info.contact if info else "",
                "interface": c.interface if c else None, "subnet": str(c.subnet) if c else None,
                "gateway": str(c.gateway) if c else None, "snat": str(c.snat_address) if c else None,
                "table": c.table_id if c else None, "table_name": c.table_label if c else None,
                "grants": [grant_dict(g, now) for g in gs],
            }
            lines = [f"{k}: {'' if v is None else v}" for k, v in data.items() if k != "grants"]
            return Result("vlan show", data=data, messages=tuple(lines),
                          tables=(TableData(f"grants on VLAN {number}", GRANT_COLUMNS,
                                            tuple(grant_row(g, now) for g in gs)),))

        run("vlan show", as_json, body)
