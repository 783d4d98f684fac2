"""Prometheus metrics of the policy engine, in a registry of its own (no global state).

Served only on 127.0.0.1 when ``watch --metrics-port`` is given.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
