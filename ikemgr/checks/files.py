"""The files a config names, looked at on disk: secrets, private keys, certificates, CAs.

The config models stay pure (no I/O), so these checks run here, from ``config check``
and ``render``. What is decided:

- a secret or a private key that others may read (mode o+r) is an **error**: the file
  already leaked to every local account, and rendering it into daemons hides that;
- any named file that others may write (o+w) is an **error**: whoever writes a CA file
  or a key decides who is trusted;
- a file that does not exist (yet) is a **warning**: the operator may render before the
  certificates are installed. (``render`` still needs the secret files it copies into the
  rendered files: those are read, and a missing one is an error there, as before.)
- a certificate or CA that others may read is fine: they are public.

Only files that the config actually uses are checked: FreeRADIUS's certificate and key
only when ikemgr renders FreeRADIUS with a TLS-based EAP method.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ikemgr.config.schema import Config

Kind = Literal["secret", "key", "cert"]


@dataclass(frozen=True)
class FileFinding:
    field: str  # config path, e.g. "radius.secret_file"
    message: str
    severity: Literal["error", "warning"]


def named_files(cfg: Config) -> list[tuple[str, Path, Kind]]:
    """Every (field, path, kind) the config names and the gateway will use."""
    out: list[tuple[str, Path, Kind]] = []
    for t in cfg.radius.targets:
        out.append((t.secret_field, t.secret_file, "secret"))
    if cfg.ldap.bind_password_file is not None:
        out.append(("ldap.bind_password_file", cfg.ldap.bind_password_file, "secret"))
    if cfg.ldap.tls_ca_file is not None:
        out.append(("ldap.tls_ca_file", cfg.ldap.tls_ca_file, "cert"))
    if cfg.database.password_file is not None:
        out.append(("database.password_file", cfg.database.password_file, "secret"))
    for i, src in enumerate(cfg.sync.sources):
        if src.kind == "sql" and src.password_file is not None:
            out.append((f"sync.sources[{i}].password_file", src.password_file, "secret"))
    out += [("gateway.cert", cfg.gateway.cert, "cert"), ("gateway.key", cfg.gateway.key, "key"),
            ("gateway.ca", cfg.gateway.ca, "cert")]
    if cfg.radius.local and {"tls", "ttls"} & set(cfg.eap.methods):
        out += [("eap.server_cert", cfg.eap.server_cert, "cert"),
                ("eap.server_key", cfg.eap.server_key, "key"),
                ("eap.ca_file", cfg.eap.ca_file, "cert")]
    return out


_WHAT = {"secret": "secret", "key": "private key", "cert": "certificate"}


def check_file(field: str, path: Path, kind: Kind) -> list[FileFinding]:
    what = _WHAT[kind]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [FileFinding(field, f"{path}: no such file (the {what} must be there before the "
                            "daemons start)", "warning")]
    except PermissionError:
        return [FileFinding(field, f"{path}: permission denied (cannot check the {what})", "warning")]
    except OSError as e:
        return [FileFinding(field, f"{path}: {e.strerror}", "warning")]
    if not stat.S_ISREG(st.st_mode):
        return [FileFinding(field, f"{path}: not a regular file", "error")]
    out = []
    mode = stat.S_IMODE(st.st_mode)
    if kind in ("secret", "key") and mode & stat.S_IROTH:
        out.append(FileFinding(field, f"{path}: the {what} is readable by everyone (mode {mode:04o}): "
                               f"chmod o-rwx {path}, and replace the {what}: it may have leaked", "error"))
    if mode & stat.S_IWOTH:
        out.append(FileFinding(field, f"{path}: writable by everyone (mode {mode:04o}): chmod o-w {path}",
                               "error"))
    return out


def file_findings(cfg: Config) -> list[FileFinding]:
    return [f for field, path, kind in named_files(cfg) for f in check_file(field, path, kind)]
