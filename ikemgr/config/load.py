"""YAML → Config, with every problem reported as ``field.path (line N): message``.

ruamel.yaml keeps the line of every key and sequence item, so a pydantic error location
(``('vlans', 2, 'subnet')``) maps back to the line the operator has to edit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ikemgr.config.problems import CROSS_CHECK
from ikemgr.config.schema import Config
from ikemgr.config.warnings import model_warnings
from ikemgr.errors import ConfigError, ConfigProblem

M = TypeVar("M", bound=Config)

DEFAULT_PATH = Path(os.environ.get("IKEMGR_CONFIG", "/etc/ikemgr/ikemgr.yaml"))
MAX_CONFIG_BYTES = 4 * 1024 * 1024

_PATH_IN_MESSAGE = re.compile(r"^(?P<path>[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (?P<msg>.+)$",
                              re.DOTALL)


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _parse_path(path: str) -> tuple[Any, ...]:
    loc: list[Any] = []
    for name, index in re.findall(r"([a-z_]+)|\[(\d+)\]", path):
        loc.append(int(index) if index else name)
    return tuple(loc)


def line_of(doc: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the YAML document."""
    node = doc
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            try:
                line = node.lc.key(part)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            try:
                line = node.lc.item(part)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            node = node[part]
        else:
            break
    if line is None and isinstance(doc, CommentedMap | CommentedSeq):
        line = doc.lc.line + 1
    return line


_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_UNION_TAGS = frozenset({"int", "str", "bool", "float", "list", "dict", "none"})


def _is_field(part: Any) -> bool:
    """Drop union-member tags (``function-before[...]``, ``IPv4Address``, ``int``) from a loc."""
    if isinstance(part, int):
        return True
    return bool(_FIELD_RE.fullmatch(str(part))) and part not in _UNION_TAGS


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def _drop_tags(loc: tuple[Any, ...], doc: Any) -> tuple[Any, ...]:
    """Drop the member tag of a discriminated union (``sources[0].sql.url`` → ``sources[0].url``):
    a name that is no key of the document where the name after it is one."""
    out: list[Any] = []
    node = doc
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and isinstance(part, str) and part not in node
                and i + 1 < len(loc) and loc[i + 1] in node):
            continue
        out.append(part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _problems(err: ValidationError, doc: Any) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    seen: set[tuple[str, str]] = set()
    for e in err.errors(include_url=False):
        # unions report one error per member ("ip_v4_address", "function-before[...]"):
        # keep the path of the model, drop the union member tags
        loc = _drop_tags(tuple(p for p in e["loc"] if _is_field(p)), doc)
        msg = _clean(str(e["msg"]))
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        path = format_loc(loc)
        # a cross check (config.problems) gives the exact location; other model-level
        # checks name their own field in the message
        m = None if e["type"] == CROSS_CHECK else _PATH_IN_MESSAGE.match(msg)
        if m:  # model-level checks name their own field: "vlans[1].table: ..."
            sub = _parse_path(m.group("path"))
            loc = loc + sub
            path = format_loc(loc)
            msg = m.group("msg")
        key = (path, msg)
        if key in seen:
            continue
        seen.add(key)
        problems.append(ConfigProblem(path or "<config>", line_of(doc, loc), msg))
    return problems


def parse_yaml(text: str, source: str = "<string>") -> Any:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError([ConfigProblem("<yaml>", line, f"not valid YAML: {what}")], source) from None
    except YAMLError as e:
        raise ConfigError([ConfigProblem("<yaml>", None, f"not valid YAML: {e}")], source) from None


def _plain(node: Any) -> Any:
    """ruamel's commented containers → plain dict/list (pydantic validates plain data)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A validated config with the YAML document it came from, to name lines in warnings."""

    config: M
    doc: Any
    source: str

    def problem(self, path: str, message: str) -> ConfigProblem:
        """``path`` (``ldap.uri``, ``vlans[1].subnet``) with the line it has in the file."""
        return ConfigProblem(path, line_of(self.doc, _parse_path(path)), message)

    def warnings(self) -> list[ConfigProblem]:
        """What is valid but probably wrong (config.warnings), each with its YAML line."""
        if not isinstance(self.config, Config):
            return []
        return [self.problem(path, msg) for path, msg in model_warnings(self.config)]


def parse_text(text: str, source: str = "<string>", model: type[M] = Config,  # type: ignore[assignment]
               ignore: frozenset[str] = frozenset()) -> Loaded[M]:
    """Validate a YAML text as ``model``; keep the document for line numbers.

    ``ignore``: top-level sections that belong to an installed extension (the lab's
    ``lab:``), left to it; any other unknown key is an error.
    """
    doc = parse_yaml(text, source)
    if doc is None:
        raise ConfigError([ConfigProblem("<config>", None, "the file is empty")], source)
    if not isinstance(doc, dict):
        raise ConfigError([ConfigProblem("<config>", 1, "the top level must be a mapping")], source)
    try:
        cfg = model.model_validate({k: v for k, v in _plain(doc).items() if k not in ignore})
    except ValidationError as e:
        raise ConfigError(_problems(e, doc), source) from None
    return Loaded(cfg, doc, source)


def load_text(text: str, source: str = "<string>", model: type[M] = Config,  # type: ignore[assignment]
              ignore: frozenset[str] = frozenset()) -> M:
    """Validate a YAML text as ``model`` (see ``parse_text``)."""
    return parse_text(text, source, model, ignore).config


def read_config_text(p: Path) -> str:
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([ConfigProblem("<config>", None, f"{p} is larger than 4 MiB")], str(p))
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigProblem("<config>", None, f"{p}: no such file")], str(p)) from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem("<config>", None, f"{p}: is a directory")], str(p)) from None
    except PermissionError:
        raise ConfigError([ConfigProblem("<config>", None, f"{p}: permission denied")], str(p)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem("<yaml>", line, "not valid UTF-8")], str(p)) from None


def load_document(path: Path | str | None = None, model: type[M] = Config,  # type: ignore[assignment]
                  ignore: frozenset[str] = frozenset()) -> Loaded[M]:
    """The config file validated, with its document (for the lines of warnings)."""
    p = Path(path) if path is not None else DEFAULT_PATH
    return parse_text(read_config_text(p), str(p), model, ignore)


def load(path: Path | str | None = None, model: type[M] = Config,  # type: ignore[assignment]
         ignore: frozenset[str] = frozenset()) -> M:
    return load_document(path, model, ignore).config
