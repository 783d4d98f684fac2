"""systemd units: the long-running `ikemgr watch`, and the service + timer of `ikemgr sync`.

The values are computed here: the paths the sync may write (the SQLite directory, the
lock file's directory, the state dir) so the unit can run with ProtectSystem=strict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ikemgr.config.dburl import split_db_url
from ikemgr.config.schema import Config
from ikemgr.errors import ConfigError, ConfigProblem
from ikemgr.render.templates import Output, render_template

#: Where the units call ikemgr from; the render command passes the running executable.
DEFAULT_BIN = Path("/usr/local/bin/ikemgr")


def _plain(path: Path, field: str) -> str:
    text = str(path)
    if not path.is_absolute() or any(c.isspace() for c in text) or any(c in text for c in "\"'\\%$;"):
        raise ConfigError([ConfigProblem(field, None, f"{text!r} cannot be used in a systemd unit "
                                         "(absolute, no spaces, quotes, '%', '$', ';' or '\\')")])
    return text


def sync_context(cfg: Config, header: str, config_path: Path,
                 ikemgr_bin: Path = DEFAULT_BIN) -> dict[str, object]:
    rw: list[Path] = [cfg.sync.lock_file.parent, cfg.policy.state_dir, cfg.policy.lock_file.parent]
    url = split_db_url(cfg.database.url)
    if url.backend == "sqlite" and url.database and url.database != ":memory:":
        rw.append(Path(url.database).parent)
    seen: list[str] = []
    for p in rw:
        text = _plain(p, "sync")
        if "-" + text not in seen:
            seen.append("-" + text)  # '-': a path that does not exist yet is not an error
    after = ["network-online.target"]
    after += ["postgresql.service"] if url.backend == "postgresql" and url.host in (
        None, "", "localhost", "127.0.0.1", "::1") else []
    return {
        "header": header,
        "ikemgr": _plain(ikemgr_bin, "ikemgr binary"),
        "config": _plain(config_path, "config path"),
        "read_write": seen,
        "after": after,
        # lock wait + connect and query per source + the apply and reconcile
        "timeout_start": int(cfg.sync.lock_timeout + 2 * cfg.sync.timeout * max(1, len(cfg.sync.sources))
                             + 60),
        "interval": cfg.sync.interval,
        "jitter": max(1, cfg.sync.interval // 10),
        "boot_delay": 120,
    }


def sync_unit_outputs(cfg: Config, header: str, config_path: Path,
                      ikemgr_bin: Path = DEFAULT_BIN) -> list[Output]:
    ctx = sync_context(cfg, header, config_path, ikemgr_bin)
    return [Output("systemd/system/ikemgr-sync.service",
                   render_template("systemd/ikemgr-sync.service.j2", **ctx)),
            Output("systemd/system/ikemgr-sync.timer",
                   render_template("systemd/ikemgr-sync.timer.j2", **ctx))]


#: The units ikemgr-apply.service must come before: charon (charon-systemd's strongswan.service,
#: whatever alias the host uses) and the policy engine, so no client is accepted without routes.
APPLY_BEFORE = ("strongswan.service", "strongswan-swanctl.service", "ikemgr-watch.service")


def apply_unit_output(cfg: Config, header: str, config_path: Path, ikemgr_bin: Path = DEFAULT_BIN) -> Output:
    """The oneshot that installs the base state at boot and after an nftables restart."""
    ctx = {"header": header, "ikemgr": _plain(ikemgr_bin, "ikemgr binary"),
           "config": _plain(config_path, "config path"), "before": list(APPLY_BEFORE)}
    return Output("systemd/system/ikemgr-apply.service",
                  render_template("systemd/ikemgr-apply.service.j2", **ctx))


def watch_unit_context(cfg: Config, header: str, config_path: Path, ikemgr_bin: str = str(DEFAULT_BIN),
                       log_format: str = "json", metrics_port: int | None = None) -> dict[str, Any]:
    """Values for templates/systemd/ikemgr-watch.service.j2 (computed here, not in the template)."""
    state_dir = cfg.policy.state_dir
    name = str(state_dir.relative_to("/var/lib")) if state_dir.is_relative_to("/var/lib") else "ikemgr"
    port = metrics_port if metrics_port is not None else cfg.observability.metrics_port
    return {"header": header, "ikemgr": ikemgr_bin, "config": str(config_path), "log_format": log_format,
            "metrics_port": port, "metrics_listen": str(cfg.observability.metrics_listen),
            "state_dir": str(state_dir), "state_dir_name": name,
            "lock_dir": str(cfg.policy.lock_file.parent)}


def unit_outputs(cfg: Config, header: str, config_path: Path, ikemgr_bin: Path = DEFAULT_BIN) -> list[Output]:
    """systemd units: the long-running watch, the periodic sync, and the boot-time apply."""
    watch = Output("systemd/system/ikemgr-watch.service",
                   render_template("systemd/ikemgr-watch.service.j2",
                                   **watch_unit_context(cfg, header, config_path, str(ikemgr_bin))))
    return [watch, *sync_unit_outputs(cfg, header, config_path, ikemgr_bin),
            apply_unit_output(cfg, header, config_path, ikemgr_bin)]
