"""jq evaluation with a compiled-program cache and variables bound without recompiling.

Compiling a jq program costs about a millisecond; running a compiled one costs
microseconds. The ``jq`` binding only binds ``$variables`` at compile time, so each
expression is compiled once into a wrapper that reads its variables from the input:
the program receives ``[data, {name: value, ...}]`` and binds ``$name`` from the
second element before running the user's expression on the first. Only variables the
expression text mentions are passed, because converting a large ``$workflow``
descriptor to jq on every evaluation would cost more than the evaluation itself.

The wrapper also closes jq's window on the process environment: ``$ENV`` and ``env``
evaluate to ``{}`` (a definition must not read the engine's environment variables),
and because the wrapper starts with a ``def``, jq module directives (``import``,
``include``), which must come first in a program, fail to compile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import jq

from flowkeeper.errors import WorkflowError, standard_error

_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# Names jq defines itself or that the wrapper shadows: never bound from the input.
_RESERVED = frozenset({"ENV", "__loc__", "__prog_args", "__fk"})
_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class Lazy:
    """A variable computed only if an expression reads it (``$task``, ``$workflow`` ...)."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute

    def __call__(self) -> Any:
        return self.compute()


class _Program:
    """A compiled expression and the variable names it reads."""

    __slots__ = ("names", "program", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.names = tuple(sorted({n for n in _VARIABLE.findall(text) if n not in _RESERVED}))
        bindings = "".join(f"($__fk.{n}) as ${n} | " for n in self.names)
        # The user's text goes last and on its own lines so that a trailing jq comment
        # cannot swallow the closing parenthesis.
        source = f"def env: {{}}; {{}} as $ENV | .[1] as $__fk | {bindings}.[0] | (\n{text}\n)"
        try:
            self.program = jq.compile(source)
        except ValueError as exc:
            raise _error(text, _first_line(str(exc))) from None

    def run(self, data: Any, variables: Mapping[str, Any]) -> Any:
        bound = {}
        for name in self.names:
            value = variables.get(name)
            bound[name] = value() if type(value) is Lazy else value
        try:
            results = self.program.input_value([data, bound]).all()
        except ValueError as exc:
            raise _error(self.text, _first_line(str(exc))) from None
        # A jq expression may yield several values; the DSL takes the first (and
        # ``empty`` is null).
        return results[0] if results else None


def _first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return message


def _error(text: str, reason: str) -> WorkflowError:
    shown = text if len(text) <= 200 else text[:197] + "..."
    return standard_error("expression", f"cannot evaluate `{shown}`: {reason}")


_JQ_TYPE = {"str": "string", "int": "number", "float": "number", "bool": "boolean"}


class _Path:
    """A plain path (``.a.b``) evaluated in Python: the most common expression by far,
    and not worth a round trip through jq. Same semantics: null propagates, indexing
    a non-object is an error."""

    __slots__ = ("keys", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.keys = tuple(k for k in text.split(".") if k)

    def run(self, data: Any, variables: Mapping[str, Any]) -> Any:
        node = data
        for key in self.keys:
            if node is None:
                return None
            if not isinstance(node, dict):
                kind = "array" if isinstance(node, list) else type(node).__name__
                kind = {"str": "string", "int": "number", "float": "number", "bool": "boolean"}.get(
                    kind, kind
                )
                raise _error(self.text, f'Cannot index {kind} with "{key}"')
            node = node.get(key)
        return node


_PLAIN_PATH = re.compile(r"\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@lru_cache(maxsize=4096)
def _compile(text: str) -> _Program | _Path:
    if _PLAIN_PATH.fullmatch(text):
        return _Path(text)
    return _Program(text)


def is_expression(value: object) -> bool:
    """True for a strict-mode runtime expression: a string written ``${ ... }``."""
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def strip_expression(expression: str) -> str:
    """The jq text of an expression, with the ``${ }`` wrapper removed if present."""
    text = expression.strip()
    if text.startswith("${") and text.endswith("}"):
        return text[2:-1].strip()
    return text


def evaluate(expression: str, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """Evaluate one expression, with or without its ``${ }`` wrapper.

    Used for fields that can only hold an expression (``if``, ``when``, ``for.in``,
    ``input.from``, ``output.as``, ``export.as``, ``while``, ``until``), which the CTK
    also writes as bare jq.
    """
    text = strip_expression(expression)
    if text == ".":
        return data
    return _compile(text).run(data, variables or {})


def evaluate_condition(expression: str | bool, data: Any, variables: Mapping[str, Any] | None = None) -> bool:
    """Evaluate a condition; jq truthiness (only ``false`` and ``null`` are false)."""
    if isinstance(expression, bool):
        return expression
    result = evaluate(expression, data, variables)
    return result is not None and result is not False


def evaluate_value(value: Any, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """Evaluate every strict-mode expression inside a value (objects and lists recursively).

    Strings not written ``${ ... }`` are literals. An object or list holding
    expressions runs as ONE jq program that builds it (one conversion of the input
    instead of one per field); each field keeps the single-expression semantics
    (first output, ``null`` when empty).
    """
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            return _compile(value[2:-1].strip()).run(data, variables or {})
        return value
    if not isinstance(value, dict | list):
        return value
    program = _template(value)
    if program is None:
        return value
    try:
        return program.run(data, variables or {})
    except WorkflowError:
        # Evaluate field by field so the error names the expression that failed.
        return _evaluate_each(value, data, variables or {})


def _evaluate_each(value: Any, data: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return evaluate_value(value, data, variables)
    if isinstance(value, dict):
        return {k: _evaluate_each(v, data, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_evaluate_each(v, data, variables) for v in value]
    return value


# id(value) -> (value, program): the value is held so that its id cannot be reused
# while the entry lives. Templates come from definitions, which are long-lived.
_TEMPLATES: dict[int, tuple[Any, _Program | _Path | _Fields | None]] = {}
_TEMPLATE_LIMIT = 4096


class _Fields:
    """An object template whose expressions are all plain paths: built in Python."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def run(self, data: Any, variables: Mapping[str, Any]) -> Any:
        return _evaluate_each(self.value, data, variables)


def _only_paths(node: Any) -> bool:
    if isinstance(node, str) and node.startswith("${") and node.endswith("}"):
        return _PLAIN_PATH.fullmatch(node[2:-1].strip()) is not None
    if isinstance(node, dict):
        return all(_only_paths(v) for v in node.values())
    if isinstance(node, list):
        return all(_only_paths(v) for v in node)
    return True


def _template(value: dict[str, Any] | list[Any]) -> _Program | _Path | _Fields | None:
    entry = _TEMPLATES.get(id(value))
    if entry is not None and entry[0] is value:
        return entry[1]
    source = _template_source(value)
    program: _Program | _Path | _Fields | None = None
    if source is not None:
        program = _Fields(value) if _only_paths(value) else _compile(source)
    if len(_TEMPLATES) >= _TEMPLATE_LIMIT:
        _TEMPLATES.clear()
    _TEMPLATES[id(value)] = (value, program)
    return program


def _template_source(value: Any) -> str | None:
    """jq text building ``value``, or None when it holds no expression."""
    found = False

    def build(node: Any) -> str:
        nonlocal found
        if isinstance(node, str) and node.startswith("${") and node.endswith("}"):
            found = True
            return f"([(\n{node[2:-1].strip()}\n)] | .[0])"
        if isinstance(node, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))}: {build(v)}" for k, v in node.items()) + "}"
        if isinstance(node, list):
            return "[" + ", ".join(build(v) for v in node) + "]"
        return json.dumps(node)

    source = build(value)
    return source if found else None


def expand_uri_template(template: str, data: Any) -> str:
    """Expand RFC 6570 simple ``{name}`` fields from the top level of ``data``.

    The DSL's "simple interpolation, only possible with top level variables" (dotted
    names reach into nested objects as a convenience). As RFC 6570 says, an undefined
    field expands to nothing; an object or array is not a path segment, so it is an
    expression error rather than a silently mangled URI.
    """
    if "{" not in template:
        return template

    def replace(match: re.Match[str]) -> str:
        node: Any = data
        for part in match.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                return ""
            node = node[part]
        if isinstance(node, dict | list):
            raise standard_error(
                "expression", f"URI template field {{{match.group(1)}}} is not a string, number or boolean"
            )
        return quote(node if isinstance(node, str) else _scalar(node), safe="")

    return _TEMPLATE_FIELD.sub(replace, template)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)
