"""`ikemgr status`: who is connected, where their campus traffic goes, and is it in the kernel."""

from __future__ import annotations

from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.result import Result, TableData


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
        netns: str | None = typer.Option(None, "--netns", help="Read policy inside this netns."),
        allow_file: Path | None = typer.Option(None, "--allow-file", help="Allow-list text file "
                                               "instead of the database."),
    ) -> None:
        """Connected users: the engine's decision (a dry-run reconcile) beside the kernel's rules."""
        from datetime import UTC, datetime

        from ikemgr.adapters.kernel.netns import check_netns
        from ikemgr.core.model import Outcome
        from ikemgr.engine.oneshot import status_view

        def body() -> Result:
            cfg = load_config(config)
            if netns is not None:
                check_netns(netns)
            view = status_view(cfg, netns=netns, allow_file=allow_file)
            report = view.report
            desired = report.owned_after  # the engine's decision for every VIP
            by_uid = {sa.uniqueid: sa for sa in view.sas}
            now = datetime.now(UTC).timestamp()
            users = []
            for d in sorted(report.decisions, key=lambda d: by_uid[d.uniqueid].sort_key()):
                sa = by_uid[d.uniqueid]
                since = (datetime.fromtimestamp(now - sa.established, UTC).isoformat(timespec="seconds")
                         if sa.established is not None else None)
                for vip in d.vips:
                    want = desired.get(vip)
                    k = view.kernel.get(vip)
                    mine = want is not None and d.outcome is Outcome.ALLOWED and want.vlan == d.vlan
                    users.append({
                        "uniqueid": sa.uniqueid, "identity": d.identity, "vip": str(vip),
                        "vlan": want.vlan if mine and want is not None else None,
                        "outcome": str(d.outcome), "reason": d.reason or None,
                        "rule": mine,
                        "in_kernel": mine and k is not None and k == want,
                        # a rule this SA must not have (a VIP another SA holds keeps its own)
                        "stale": not mine and k is not None and want is None,
                        "kernel_vlan": k.vlan if k is not None else None,
                        "since": since, "bytes_in": sa.bytes_in, "bytes_out": sa.bytes_out,
                        "outer": sa.remote_host or None,  # the client's outer (public/NAT) address
                    })
            changes = list(report.plan.lines())
            out_of_sync = len(changes) + report.stray
            rows = tuple((u["identity"], u["outer"] or "-", u["vip"], u["vlan"] or "-", u["outcome"],
                          "yes" if u["in_kernel"] else
                          ("MISSING" if u["rule"] else ("STALE" if u["stale"] else "no")),
                          u["since"] or "", u["bytes_in"], u["bytes_out"]) for u in users)
            msg = (f"{len(users)} connected, {sum(1 for u in users if u['rule'])} routed to lab VLANs, "
                   f"backend {cfg.policy.backend}"
                   + (f", {out_of_sync} out of sync (a reconcile would: {'; '.join(changes)})"
                      if out_of_sync else "")
                   + (" (allow-list from snapshot)" if view.allow_stale else ""))
            return Result("status", data={"users": users, "backend": cfg.policy.backend,
                                          "out_of_sync": out_of_sync, "would_change": changes,
                                          "stray": report.stray, "allow_list_stale": view.allow_stale},
                          messages=(msg,),
                          tables=(TableData("connected users", ("identity", "from", "vip", "vlan", "decision",
                                                                "in kernel", "since", "bytes in",
                                                                "bytes out"), rows),))

        run("status", as_json, body)
