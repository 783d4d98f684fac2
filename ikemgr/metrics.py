"""Prometheus metrics of the policy engine, in a registry of its own (no global state).

``watch`` serves them on ``observability.metrics_listen:metrics_port`` (127.0.0.1 unless
the operator says otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
    write_to_textfile,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions = Gauge("ikemgr_active_sessions", "VIPs routed into a lab VLAN", ["vlan"],
                              registry=self.registry)
        self.decisions = Counter("ikemgr_decisions", "per-SA policy decisions", ["outcome"],
                                 registry=self.registry)
        self.corrections = Counter("ikemgr_reconcile_corrections",
                                   "kernel changes made by a full reconcile (drift repaired)",
                                   registry=self.registry)
        self.changes = Counter("ikemgr_rule_changes", "user rules added or removed", ["op"],
                               registry=self.registry)
        self.latency = Histogram("ikemgr_event_to_rule_seconds", "VICI event received → kernel changed",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.vici_connected = Gauge("ikemgr_vici_connected", "1 while watch holds charon's VICI socket",
                                    registry=self.registry)
        self.last_reconcile = Gauge("ikemgr_last_full_reconcile_timestamp_seconds",
                                    "when the last full reconcile finished", registry=self.registry)
        self.last_reconcile_ok = Gauge("ikemgr_last_full_reconcile_success",
                                       "1 if the last full reconcile succeeded", registry=self.registry)
        self.last_reconcile_corrections = Gauge(
            "ikemgr_last_full_reconcile_corrections", "kernel changes the last full reconcile made",
            registry=self.registry)
        # the process itself: CPU, memory, open files, start time (prometheus_client's collectors)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.errors = Counter("ikemgr_errors", "failures handled without stopping (each logged): "
                              "conntrack flushes, undecodable VICI events, failed kernel reads",
                              ["kind"], registry=self.registry)
        self._vlans: set[str] = set()

    def error(self, kind: str, n: int = 1) -> None:
        self.errors.labels(kind=kind).inc(n)

    def set_sessions(self, per_vlan: Mapping[int, int]) -> None:
        now = {str(k): v for k, v in per_vlan.items()}
        for gone in self._vlans - set(now):
            self.sessions.labels(vlan=gone).set(0)
        for k, v in now.items():
            self.sessions.labels(vlan=k).set(v)
        self._vlans |= set(now)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)


def write_run_textfile(directory: Path, job: str, exit_code: int, started: float,
                       values: Mapping[str, tuple[str, float]]) -> Path:
    """A short-lived command's last run for node_exporter's textfile collector.

    ``ikemgr_<job>_last_run_timestamp_seconds``, ``…_last_success``, ``…_last_exit_code``,
    ``…_last_duration_seconds`` and each ``values`` entry (name → (help, value)), in
    ``<directory>/ikemgr_<job>.prom``; prometheus_client replaces the file atomically, so
    the collector never reads half of it.
    """
    reg = CollectorRegistry()
    now = time.time()

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(f"ikemgr_{job}_{name}", doc, registry=reg).set(value)

    gauge("last_run_timestamp_seconds", f"when the last ikemgr {job} ended", now)
    gauge("last_success", f"1 if the last ikemgr {job} exited 0", 1 if exit_code == 0 else 0)
    gauge("last_exit_code", f"exit code of the last ikemgr {job} (docs/cli.md)", exit_code)
    gauge("last_duration_seconds", f"how long the last ikemgr {job} took", max(0.0, now - started))
    for name, (doc, value) in values.items():
        gauge(name, doc, value)
    path = directory / f"ikemgr_{job}.prom"
    directory.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)
    return path
