"""Text to plain JSON-like data: YAML (with YAML 1.2 core scalars) or JSON.

PyYAML implements YAML 1.1, whose implicit typing is wrong for workflow documents:
``on:`` (a key of ``schedule``) would become ``True``, ``yes``/``no`` booleans,
``010`` the octal 8, ``12:30`` the sexagesimal 750 and ``2024-01-01`` a ``date``
that JSON cannot hold. :class:`DocumentLoader` resolves plain scalars the YAML 1.2
core-schema way instead (only ``true``/``false`` are booleans, no timestamps), turns
non-string keys into their JSON spelling and rejects duplicate keys, so what comes
out is exactly what the same document would mean as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from flowkeeper.errors import DefinitionError, Problem

# libyaml's parser is ~10x faster than the pure-Python one; the resolvers and
# constructors below are Python-level and apply to either.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Past this many nodes a document is refused: YAML aliases can expand a few lines
#: into billions of nodes ("billion laughs"), or into a cycle.
MAX_NODES = 200_000

_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


class DocumentLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """A safe YAML loader with YAML 1.2 core-schema scalars and strict mappings."""

    # Start from an empty resolver table instead of inheriting YAML 1.1's.
    yaml_implicit_resolvers: dict[Any, Any] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain strings", key_node.start_mark
                )
            key = _json_key(self.construct_object(key_node))
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen[key] = key_node
        mapping = super().construct_mapping(node, deep=deep)
        # JSON object keys are strings: ``200:`` means "200", ``true:`` means "true".
        return {_json_key(k): v for k, v in mapping.items()}


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-").lower()
    base = {"0x": 16, "0o": 8, "0b": 2}.get(digits[:2], 10)
    try:
        return sign * int(digits[2:] if base != 10 else digits, base)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"invalid integer {text!r}", node.start_mark
        ) from None


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        # JSON has no NaN or infinity; a document must mean the same in both.
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a finite number", node.start_mark
        )
    return value


DocumentLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
DocumentLoader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])
DocumentLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
DocumentLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
DocumentLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
DocumentLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
DocumentLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _where(filename: str | None) -> str:
    return f"{filename}: " if filename else ""


def _reject_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is not a finite number")
    return value


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_text(text: str, *, filename: str | None = None) -> Any:
    """Parse YAML or JSON text into plain data (dicts, lists, str, int, float, bool, None).

    Raises :class:`DefinitionError` with one :class:`Problem` at pointer ``""``
    naming the line and column of a syntax error.
    """
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        # Real JSON goes through the json module: faster, and it accepts things
        # YAML's flow style rejects (tabs as whitespace, for instance).
        try:
            return json.loads(
                text,
                object_pairs_hook=_json_object,
                parse_constant=_reject_json_constant,
                parse_float=_finite_float,
            )
        except json.JSONDecodeError as error:
            json_error: ValueError | None = error
        except ValueError as error:
            json_error = error
        # Flow-style YAML (``{a: 1}``) is not JSON; try YAML before giving up.
        try:
            return _parse_yaml(text)
        except yaml.YAMLError:
            raise DefinitionError([Problem("", _json_message(json_error, filename))]) from None
    try:
        return _parse_yaml(text)
    except yaml.YAMLError as error:
        raise DefinitionError([Problem("", _yaml_message(error, filename, text))]) from None


def _parse_yaml(text: str) -> Any:
    loader = DocumentLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _tab_hint(text: str, mark: yaml.Mark) -> str:
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    if mark.column < len(line) and line[mark.column] == "\t":
        return " (a tab: YAML is indented with spaces only)"
    return ""


def _yaml_message(error: yaml.YAMLError, filename: str | None, text: str) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        context = ""
        start = error.context_mark
        if error.context and start is not None and mark is not None and start.index != mark.index:
            # Where the unclosed bracket or block began is what the author must look at.
            context = f" ({error.context} that starts at line {start.line + 1}, column {start.column + 1})"
        if mark is not None:
            return (
                f"{_where(filename)}YAML syntax error at line {mark.line + 1}, "
                f"column {mark.column + 1}: {problem}{context}{_tab_hint(text, mark)}"
            )
        return f"{_where(filename)}YAML syntax error: {problem}"
    return f"{_where(filename)}YAML syntax error: {error}"


def _json_message(error: ValueError | None, filename: str | None) -> str:
    if isinstance(error, json.JSONDecodeError):
        return (
            f"{_where(filename)}JSON syntax error at line {error.lineno}, column {error.colno}: {error.msg}"
        )
    return f"{_where(filename)}JSON syntax error: {error}"


def check_size(value: Any, limit: int = MAX_NODES) -> bool:
    """True when ``value`` has at most ``limit`` nodes (cycles count as too many)."""
    stack = [value]
    count = 0
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True
