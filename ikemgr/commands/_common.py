"""Shared CLI plumbing: the common options and the one place that turns errors into exits."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from ikemgr.checks.files import file_findings
from ikemgr.config.load import DEFAULT_PATH, Loaded, load, load_document
from ikemgr.config.schema import Config
from ikemgr.core.secrets import Secrets
from ikemgr.errors import EXIT_OK, ConfigError, ConfigProblem, IkemgrError
from ikemgr.fsio import config_secret as read_secret
from ikemgr.result import Result, error_json, render

ConfigOpt = typer.Option(
    DEFAULT_PATH, "--config", "-c", envvar="IKEMGR_CONFIG",
    help="The ikemgr YAML config.", show_default=True,
)
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON.")


def extension_sections() -> frozenset[str]:
    """Top-level config sections that installed extensions own (entry points ``ikemgr.config``).

    The namespace lab registers ``lab``: with it installed, the product commands read a
    lab document (examples/lab.yaml) and leave its ``lab:`` section to the lab; without
    it, ``lab:`` is an unknown key like any other.
    """
    from importlib.metadata import entry_points

    return frozenset(ep.name for ep in entry_points(group="ikemgr.config"))


def load_config(path: Path) -> Config:
    return load(path, ignore=extension_sections())


def log_level_of(option: str | None, cfg: Config) -> str:
    """--log-level if given (checked), else the config's observability.log_level."""
    from ikemgr.errors import UsageError
    from ikemgr.log import LEVELS

    level = option or cfg.observability.log_level
    if level not in LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LEVELS)}")
    return level


def load_checked(path: Path) -> tuple[Config, tuple[str, ...]]:
    """The config for ``config check`` and ``render``: refused as ``load_config`` refuses it,
    and also when a file it names is unsafe (checks.files); its warnings as printable lines.

    The other commands load with ``load_config``: a daemon restarted by systemd should not
    stop on a warning about a certificate file it does not read itself.
    """
    loaded: Loaded[Config] = load_document(path, ignore=extension_sections())
    warnings = loaded.warnings()
    errors: list[ConfigProblem] = []
    for f in file_findings(loaded.config):
        (errors if f.severity == "error" else warnings).append(loaded.problem(f.field, f.message))
    if errors:
        raise ConfigError(errors, str(path))
    return loaded.config, tuple(str(w) for w in warnings)


def load_secrets(cfg: Config) -> Secrets:
    """Every secret the rendered files need, read from the files the config names."""
    bind = None
    if cfg.ldap.bind_password_file is not None:
        bind = read_secret(cfg.ldap.bind_password_file, "ldap.bind_password_file")
    servers = tuple(read_secret(t.secret_file, t.secret_field) for t in cfg.radius.targets)
    if cfg.radius.local:  # the local FreeRADIUS and charon share radius.secret_file
        return Secrets(servers[0], bind, crl_issuer_hash=crl_issuer_of(cfg))
    return Secrets(servers[0], bind, radius_servers=servers)


def crl_issuer_of(cfg: Config) -> str | None:
    """OpenSSL's hash of ``eap.crl_file``'s issuer, the CRL's name in FreeRADIUS's ca_path.

    FreeRADIUS with ``check_crl`` refuses every client certificate while it has no CRL of
    their issuer, so a missing or unreadable CRL stops the render here.
    """
    path = cfg.eap.crl_file
    if path is None:
        return None
    from ikemgr.errors import UsageError
    from ikemgr.pki.crl import crl_issuer_hash

    try:
        return crl_issuer_hash(path.read_bytes())
    except OSError as e:
        raise UsageError(f"eap.crl_file: {path}: {e.strerror} (`ikemgr pki crl` writes it; FreeRADIUS "
                         "refuses every client certificate without a CRL)") from None
    except ValueError:
        raise UsageError(f"eap.crl_file: {path}: not a CRL in PEM or DER") from None


def run(command: str, as_json: bool, fn: Callable[[], Result]) -> None:
    """Run a command body; print its Result or its error; exit with the right code."""
    try:
        result = fn()
    except IkemgrError as e:
        if as_json:
            import json

            payload = error_json(command, e.exit_code, e.to_json())
            sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        else:
            for line in e.lines():
                typer.echo(f"error: {line}", err=True)
        raise typer.Exit(e.exit_code) from None
    render(result, as_json)
    if result.exit_code != EXIT_OK:
        raise typer.Exit(result.exit_code)
