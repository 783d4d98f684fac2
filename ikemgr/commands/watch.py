"""`ikemgr watch`: the policy daemon on charon's VICI events."""

from __future__ import annotations

from pathlib import Path

import typer

from ikemgr.commands._common import ConfigOpt, load_config, log_level_of, run
from ikemgr.result import Result


def register(app: typer.Typer) -> None:
    @app.command("watch")
    def watch(
        config: Path = ConfigOpt,
        netns: str | None = typer.Option(None, "--netns", help="Apply policy inside this network "
                                         "namespace (the lab); the VICI socket path is reachable anyway."),
        metrics_port: int | None = typer.Option(None, "--metrics-port", min=1, max=65535,
                                                help="Serve Prometheus metrics on PORT "
                                                "(default: observability.metrics_port)."),
        metrics_listen: str | None = typer.Option(None, "--metrics-listen", help="Address for the metrics "
                                                  "(default: observability.metrics_listen, 127.0.0.1)."),
        log_format: str = typer.Option("text", "--log-format", help="text or json (one line per record)."),
        log_level: str | None = typer.Option(None, "--log-level", help="debug, info, warning or error "
                                             "(default: observability.log_level)."),
        allow_file: Path | None = typer.Option(None, "--allow-file", help="Read the allow-list from a text "
                                               "file (account@NNNNNN per line), not the database."),
        lock_file: Path | None = typer.Option(None, "--lock-file", help="Override policy.lock_file."),
        conntrack_flush: bool = typer.Option(True, "--conntrack-flush/--no-conntrack-flush",
                                             help="Delete conntrack entries of VIPs whose path changed."),
        tick: float = typer.Option(0.5, "--tick", min=0.05, max=10.0,
                                   help="Seconds between idle checks (signals, allow-list polls)."),
    ) -> None:
        """Follow charon's events and keep each VIP's policy equal to the decision.

        Full reconcile on start, on reconnect (charon restarted), on SIGHUP, on allow-list
        change and every policy.reconcile_interval seconds. SIGTERM stops it and leaves
        the rules in place: the next start reconciles.
        """
        from ikemgr.adapters.kernel.netns import check_netns
        from ikemgr.allowlist.store.notify import ChangeListener
        from ikemgr.engine.watch import Watcher
        from ikemgr.engine.wiring import build_engine, close_engine
        from ikemgr.errors import UsageError
        from ikemgr.log import setup_logging

        def body() -> Result:
            if log_format not in ("text", "json"):
                raise UsageError("--log-format must be text or json")
            cfg = load_config(config)
            setup_logging(log_format, log_level_of(log_level, cfg))
            if netns is not None:
                check_netns(netns)
            obs = cfg.observability
            port = metrics_port or obs.metrics_port
            listen = metrics_listen or str(obs.metrics_listen)
            if port:
                from ikemgr.metrics import Metrics  # prometheus_client only when metrics are served

                metrics: Metrics | None = Metrics()
            else:
                metrics = None
            engine = build_engine(cfg, netns=netns, allow_file=allow_file, lock_file=lock_file,
                                  metrics=metrics, flush_conntrack=conntrack_flush, long_lived=True)
            try:
                if metrics is not None and port:
                    metrics.serve(port, listen)
                changes = None if allow_file is not None else ChangeListener(cfg)
                w = Watcher(engine, cfg.strongswan.vici_socket, tick=tick, changes=changes)
                w.install_signals()
                w.run()
            finally:
                if changes is not None:
                    changes.close()
                close_engine(engine)
            return Result("watch", data={"rules": len(engine.owned), "reconnects": w.reconnects},
                          messages=(f"stopped; {len(engine.owned)} rules left in place",))

        run("watch", False, body)
