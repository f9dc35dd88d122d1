"""Where settings come from: a YAML/JSON file and ``FLOWKEEPER__`` variables, read into
plain dicts for :mod:`flowkeeper.config`'s model, and its errors described without
echoing secrets. (The model itself is in ``config.py``.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from flowkeeper.errors import ConfigurationError

ENV_PREFIX = "FLOWKEEPER__"

_SENSITIVE = re.compile(r"secret|password|passwd|token|api_?key|credential", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with the password of its user-info replaced by ``***`` (other text unchanged)."""
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    # The last "@" is taken so that an unescaped "@" or "/" inside a password is still
    # hidden; in doubt this masks too much, never too little.
    if not sep or at < 0 or ":" not in rest[:at]:
        return url
    user = rest[:at].split(":", 1)[0]
    return f"{scheme}://{user}:***@{rest[at + 1 :]}"


def read_file(path: Path, model: type[BaseModel], guide_logging_keys: Iterable[str]) -> dict[str, Any]:
    """A settings file as a dict of ``model``'s snake_case keys (camelCase, PascalCase and a
    top-level ``WorkflowEngine`` block accepted); ``ConfigurationError`` when unreadable."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ConfigurationError(f"{path}: unsupported config file type; use .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigurationError(f"{path}: invalid JSON at {where}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        # Problem and position only: the snippet PyYAML quotes could show a password.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigurationError(f"{path}: invalid YAML{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: the top level must be a mapping of sections")
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if snake(str(key)) == "workflow_engine" and isinstance(value, dict):
            deep_merge(data, normalise(value, model))
        else:
            deep_merge(data, normalise({key: value}, model))
    section = data.setdefault("logging", {})
    if isinstance(section, dict):
        section.update({key: data.pop(key) for key in guide_logging_keys if key in data})
    return data


def snake(key: str) -> str:
    """``camelCase``, ``PascalCase`` or ``kebab-case`` as ``snake_case``."""
    key = key.strip().replace("-", "_")
    key = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", key)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()


def normalise(data: Mapping[Any, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` with the keys of ``model`` and of its nested models in snake_case."""
    # Schema-guided, so the keys of free-form maps (logger names) are left alone.
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = snake(str(key))
        field = model.model_fields.get(name)
        sub = field.annotation if field is not None else None
        if isinstance(value, Mapping) and isinstance(sub, type) and issubclass(sub, BaseModel):
            value = normalise(value, sub)
        out[name] = value
    return out


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The ``FLOWKEEPER__`` variables as nested settings, and which variable set each path."""
    data: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        dotted = ".".join(path)
        if not all(path):
            raise ConfigurationError(f"{name}: empty key segment; write FLOWKEEPER__SECTION__KEY")
        value: Any = environ[name]
        if value.lstrip()[:1] in ("[", "{"):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigurationError(f"{dotted}: invalid JSON [from {name}]") from None
        cursor = data
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
            if not isinstance(cursor, dict):
                break
        if not isinstance(cursor, dict) or isinstance(cursor.get(path[-1]), dict):
            raise ConfigurationError(f"{dotted}: conflicts with another FLOWKEEPER__ variable [from {name}]")
        cursor[path[-1]] = value
        sources[path] = name
    return data, sources


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    """Merge ``top`` into ``base`` (nested mappings merged, other values replaced)."""
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value


def describe(exc: ValidationError, sources: Mapping[tuple[str, ...], str]) -> str:
    """A validation error as one line per problem, naming the key path (and variable)."""
    lines = []
    for error in exc.errors(include_url=False):
        loc, value, unknown = error["loc"], error.get("input"), error["type"] == "extra_forbidden"
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "settings"
        message = "unknown setting" if unknown else error["msg"].removeprefix("Value error, ")
        line = f"{path}: {re.sub(r'^Input should be ', 'must be ', message)}"
        # Values of unknown or secret-looking keys are not echoed: they may be passwords.
        if not unknown and isinstance(value, str | int | float) and not _SENSITIVE.search(path):
            shown = repr(mask_url(value) if isinstance(value, str) else value)
            line += "" if shown in message else f" (got {shown[:80]})"
        # A variable's path may be longer than the error's (it names an unknown section)
        # or shorter (the bad key is inside its JSON value).
        n = len(loc)
        source = next((var for p, var in sources.items() if n and p[:n] == loc[: len(p)]), None)
        lines.append(line + (f" [from {source}]" if source else ""))
    return "\n".join(lines)
