"""`ikemgr config check|show`: validate the config and show the derived values."""

from __future__ import annotations

from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_checked, load_config, run
from ikemgr.result import Result, TableData


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="Validate and inspect the config.")
    app.add_typer(sub, name="config")

    @sub.command("check")
    def check(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
        """Validate the config; print one line per problem (field path and YAML line).

        Problems are errors (exit 2); warnings (valid but probably wrong: clear-text LDAP,
        a missing certificate) are printed as `warning: …` and leave the exit code 0.
        """

        def body() -> Result:
            cfg, warnings = load_checked(config)
            note = f", {len(warnings)} warning(s)" if warnings else ""
            return Result("config check", data={"config": str(config), "vlans": len(cfg.vlans)},
                          messages=(f"{config}: ok ({len(cfg.vlans)} lab VLANs{note})",),
                          warnings=warnings)

        run("config check", as_json, body)

    @sub.command("show")
    def show(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
        """Print the config with every derived value filled in (SNAT, tables)."""

        def body() -> Result:
            cfg = load_config(config)
            rows = tuple(
                (v.number, v.interface, str(v.subnet), str(v.gateway), str(v.snat_address),
                 v.table_id, v.table_label)
                for v in cfg.vlans
            )
            return Result(
                "config show",
                data=cfg.model_dump(mode="json"),
                messages=(f"pool {cfg.pool.range_text} in {cfg.pool_network}",),
                tables=(TableData("lab VLANs", ("number", "interface", "subnet", "gateway",
                                                "snat", "table", "name"), rows),),
            )

        run("config show", as_json, body)
