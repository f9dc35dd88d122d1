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

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import jq

from flowkeeper.errors import WorkflowError, standard_error

_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# Names jq defines itself or that the wrapper shadows: never bound from the input.
_RESERVED = frozenset({"ENV", "__loc__", "__prog_args", "__fk"})
_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


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
        bound = {n: variables.get(n) for n in self.names}
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


@lru_cache(maxsize=4096)
def _compile(text: str) -> _Program:
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

    Strings not written ``${ ... }`` are literals.
    """
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            return _compile(value[2:-1].strip()).run(data, variables or {})
        return value
    if isinstance(value, dict):
        return {k: evaluate_value(v, data, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate_value(v, data, variables) for v in value]
    return value


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
