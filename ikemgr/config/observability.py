"""What an operator watches: log level, Prometheus metrics of watch, textfiles of sync and hook.

``watch`` is long-lived and serves its metrics over HTTP; ``sync`` (a timer) and ``hook``
(one updown call) are short-lived and write a node_exporter textfile instead, replaced
atomically after each run.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ikemgr.config.types import AbsPath, IPAddress, Strict

LogLevel = Literal["debug", "info", "warning", "error"]


class Observability(Strict):
    log_level: LogLevel = Field("info", description="watch, hook and sync; --log-level overrides")
    metrics_listen: IPAddress = Field(
        "127.0.0.1", description="address watch serves /metrics on (rendered into the unit)")  # type: ignore[assignment]
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="port of watch's /metrics; None = not served")
    textfile_dir: AbsPath | None = Field(
        None, description="node_exporter textfile collector directory: sync and hook write "
        "ikemgr_sync.prom / ikemgr_hook.prom there after every run")
