"""`ikemgr terminate --user account@NNNNNN`: disconnect one user's sessions now.

The identity passes the same grammar as every identity (a hostile or pattern-like value
is refused before charon is asked anything); the user's live IKE_SAs are matched by
value — on the certificate connection by their subject's CN, as the engine decides —
and closed over VICI. charon's down events then remove their policy through ``watch``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, run
from ikemgr.errors import EXIT_FAILED
from ikemgr.result import Result


def register(app: typer.Typer) -> None:
    @app.command("terminate")
    def terminate(
        user: str = typer.Option(..., "--user", help="account@NNNNNN or account: every session of it."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Disconnect one user: close every live IKE_SA whose identity is USER (exit 1 if none)."""
        from ikemgr.core.identity import IdentityGrammar
        from ikemgr.core.policy import sessions_of
        from ikemgr.engine.oneshot import charon_view, terminate_sas

        def body() -> Result:
            cfg = load_config(config)
            grammar = IdentityGrammar.of(cfg)
            ident = grammar.parse(user)  # IdentityRejected: exit 2, nothing asked of charon
            sas, _leases = charon_view(cfg)
            uids = sessions_of(sas, ident, cfg, grammar)
            done = terminate_sas(cfg, uids)
            name = str(ident)
            if not uids:
                return Result("terminate", data={"user": name, "terminated": []},
                              messages=(f"{name}: no live session",), exit_code=EXIT_FAILED)
            return Result("terminate", data={"user": name, "terminated": done},
                          messages=(f"{name}: {len(done)} of {len(uids)} session(s) terminated "
                                    f"(IKE_SA {', '.join(done)})",),
                          exit_code=0 if len(done) == len(uids) else EXIT_FAILED)

        run("terminate", as_json, body)
