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
        """Connected users from list-sas, joined with the allow-list and the kernel."""
        import time
        from datetime import UTC, datetime

        from ikemgr.adapters import vici
        from ikemgr.adapters.netns import check_netns
        from ikemgr.core.identity import IdentityGrammar
        from ikemgr.core.model import Outcome
        from ikemgr.core.policy import decide
        from ikemgr.reconcile import make_backend, open_allow_list

        def body() -> Result:
            cfg = load_config(config)
            if netns is not None:
                check_netns(netns)
            grammar = IdentityGrammar(cfg.policy.identity_pattern, cfg.policy.account_pattern)
            cmd = vici.CommandSession(vici.connect(cfg.strongswan.vici_socket))
            try:
                sas = [s for s in cmd.list_sas() if s.live]
            finally:
                cmd.close()
            allow = open_allow_list(cfg, grammar, allow_file)
            allowed = allow.active_pairs(datetime.now(UTC))
            backend = make_backend(cfg, netns)
            try:
                kernel = backend.read().rules
            finally:
                backend.close()
            now = time.time()
            users = []
            for sa in sorted(sas, key=lambda s: s.sort_key()):
                d = decide(sa, allowed, cfg, grammar)
                for vip in sa.vips:
                    k = kernel.get(vip)
                    want = d.vlan if d.outcome is Outcome.ALLOWED else None
                    since = (datetime.fromtimestamp(now - sa.established, UTC).isoformat(timespec="seconds")
                             if sa.established is not None else None)
                    users.append({
                        "uniqueid": sa.uniqueid, "identity": d.identity, "vip": str(vip),
                        "vlan": want, "outcome": str(d.outcome),
                        "rule": want is not None,
                        "in_kernel": k is not None and k.vlan == want,
                        "kernel_vlan": k.vlan if k is not None else None,
                        "since": since, "bytes_in": sa.bytes_in, "bytes_out": sa.bytes_out,
                    })
            bad = [u for u in users if u["rule"] != u["in_kernel"]]
            rows = tuple((u["identity"], u["vip"], u["vlan"] or "-", u["outcome"],
                          "yes" if u["in_kernel"] else ("MISSING" if u["rule"] else "no"),
                          u["since"] or "", u["bytes_in"], u["bytes_out"]) for u in users)
            msg = (f"{len(users)} connected, {sum(1 for u in users if u['rule'])} routed to lab VLANs, "
                   f"backend {cfg.policy.backend}" + (f", {len(bad)} out of sync" if bad else "")
                   + (" (allow-list from snapshot)" if allow.stale else ""))
            return Result("status", data={"users": users, "backend": cfg.policy.backend,
                                          "out_of_sync": len(bad), "allow_list_stale": allow.stale},
                          messages=(msg,),
                          tables=(TableData("connected users", ("identity", "vip", "vlan", "decision",
                                                                "in kernel", "since", "bytes in",
                                                                "bytes out"), rows),))

        run("status", as_json, body)
