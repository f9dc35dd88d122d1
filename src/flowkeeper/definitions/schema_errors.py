"""jsonschema errors turned into :class:`Problem` objects: a JSON pointer and plain words.

Where the schema offers alternatives (``oneOf``/``anyOf``: a duration, an endpoint,
an authentication policy), jsonschema reports that none matched and hides the
reasons in ``error.context``. We look inside: when exactly one alternative matched
the shape of the value (its errors are all deeper than the value itself) its errors
are the real ones; otherwise we say what was expected.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from jsonschema import ValidationError

from flowkeeper.errors import Problem

#: At most this many problems are reported for one document.
MAX_PROBLEMS = 20

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}

# What a value must look like, by the title of the schema that failed: the pinned
# titles, or the $defs name where the pinned schema has no title ("duration").
_EXPECTED = {
    "duration": "a duration: an ISO 8601 string such as PT30S, a runtime expression, "
    "or a mapping of days/hours/minutes/seconds/milliseconds",
    "Endpoint": "an endpoint: a URI, a runtime expression, or a mapping with 'uri'",
    "UriTemplate": "an absolute URI such as https://example.com/path",
    "RuntimeExpression": "a runtime expression such as ${ .field }",
    "WorkflowName": "1-63 letters, digits or '-', starting and ending with a letter or digit",
    "WorkflowNamespace": "1-63 letters, digits or '-', starting and ending with a letter or digit",
    "WorkflowDSL": "a semantic version such as 1.0.0",
    "WorkflowVersion": "a semantic version such as 1.0.0",
    "AuthenticationPolicy": "an authentication policy: one of basic, bearer, digest, oauth2, oidc",
    "ReferenceableAuthenticationPolicy": "an authentication policy (basic, bearer, digest, oauth2, "
    "oidc) or {use: NAME}",
    "EventConsumptionStrategy": "an event consumption strategy: exactly one of all, any, one",
    "Schema": "a schema: format plus exactly one of document, resource",
    "RetryBackoff": "a backoff: exactly one of constant, exponential, linear",
    "RunTaskConfiguration": "a process: exactly one of container, script, shell, workflow",
    "TaskTimeout": "a timeout: a mapping with 'after', or the name of a timeout in use.timeouts",
    "DoTimeout": "a timeout: a mapping with 'after', or the name of a timeout in use.timeouts",
    "RaiseTaskError": "an error: a mapping with 'type' and 'status', or the name of an error in use.errors",
    "FlowDirective": "continue, exit, end or the name of a task",
    "AnyEventUntilCondition": "a runtime expression",
    "AnyEventUntilConsumed": "an event consumption strategy",
    "DurationInline": "a mapping of days/hours/minutes/seconds/milliseconds",
    "DurationExpression": "a runtime expression",
    "DurationLiteral": "an ISO 8601 duration such as PT30S",
}

_ENTRY_WORDS = {
    "TaskItem": "a task list entry must map exactly one task name to its definition",
    "SwitchItem": "a switch entry must map exactly one case name to its definition",
    "ExtensionItem": "an extensions entry must map exactly one extension name to its definition",
}

_REQUIRED = re.compile(r"^(.*) is a required property$")
_UNEVALUATED = re.compile(r"^Unevaluated properties are not allowed \((.*) (?:was|were) unexpected\)$")


def escape(segment: str | int) -> str:
    """One JSON-pointer segment (RFC 6901 escaping)."""
    return str(segment).replace("~", "~0").replace("/", "~1")


def to_pointer(path: Iterable[str | int]) -> str:
    """A JSON pointer from path segments."""
    return "".join("/" + escape(part) for part in path)


def _sort_key(path: Sequence[str | int]) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in path)


def problems_from_errors(errors: Iterable[ValidationError], limit: int = MAX_PROBLEMS) -> list[Problem]:
    """Explain up to ``limit`` schema errors (deduplicated, in document order)."""
    found: dict[tuple[tuple[str | int, ...], str], None] = {}
    leftovers: list[tuple[tuple[str | int, ...], str]] = []
    stopped_early = False
    for count, error in enumerate(errors):
        for path, message, echo in _explain(error):
            if echo:
                leftovers.append((tuple(path), message))
            else:
                found.setdefault((tuple(path), message))
        if count >= 200 or len(found) > 4 * limit:
            stopped_early = True
            break  # enough to show; a hopeless document must not take long
    for where, message in leftovers:
        # "Unevaluated" is often only the echo of a failed alternative reported at
        # the same place or inside it; keep it only when it is the whole story.
        if not any(other[: len(where)] == where for other, _ in found):
            found.setdefault((where, message))
    ordered = sorted(found, key=lambda item: _sort_key(item[0]))
    problems = [Problem(to_pointer(path), message) for path, message in ordered]
    if len(problems) > limit:
        hidden = len(problems) - (limit - 1)
        more = f"at least {hidden}" if stopped_early else str(hidden)
        problems = [*problems[: limit - 1], Problem("", f"... and {more} more problems")]
    return problems


def _explain(error: ValidationError) -> list[tuple[list[str | int], str, bool]]:
    """(path, message, is it an "unevaluated" echo) for the error's real causes."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        branch = _matching_branch(error)
        if branch is not None:
            return [item for sub in branch for item in _explain(sub)]
    echo = error.validator == "unevaluatedProperties"
    return [(list(error.absolute_path), _message(error), echo)]


def _matching_branch(error: ValidationError) -> list[ValidationError] | None:
    """The errors of the one alternative whose shape the value has, if there is one."""
    branches: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in error.context or ():
        branches[sub.relative_schema_path[0] if sub.relative_schema_path else None].append(sub)
    depth = len(error.absolute_path)
    # An alternative that failed on the value itself (wrong type, missing its key...)
    # is not what the author meant; one that failed only deeper inside is.
    candidates = [
        errs
        for errs in branches.values()
        if all(len(e.absolute_path) > depth or _is_nested_choice(e) for e in errs)
    ]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        return None
    # Every alternative failed on the value itself: prefer the one that declares
    # most of the keys the value has ({username: u} is a basic policy missing its
    # password, not a secret reference missing 'use').
    options = error.validator_value if isinstance(error.validator_value, list) else []
    keys = set(error.instance) if isinstance(error.instance, dict) else set()
    scored = sorted(
        ((len(keys & _declared(options[index])), index) for index in branches if isinstance(index, int)),
        reverse=True,
    )
    if scored and scored[0][0] > 0 and (len(scored) == 1 or scored[1][0] < scored[0][0]):
        return branches[scored[0][1]]
    return None


def _declared(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    names = set(schema.get("properties", ()))
    for sub in schema.get("allOf", ()):
        names |= _declared(sub)
    return names


def _is_nested_choice(error: ValidationError) -> bool:
    # A nested oneOf at the same place that itself has one matching alternative.
    return (
        error.validator in ("oneOf", "anyOf") and bool(error.context) and _matching_branch(error) is not None
    )


def _title(error: ValidationError) -> str | None:
    schema = error.schema
    return schema.get("title") if isinstance(schema, dict) else None


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _humanize(title: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", title).lower()
    return words


def _message(error: ValidationError) -> str:
    validator = error.validator
    value: Any = error.validator_value
    title = _title(error)
    if validator == "required":
        match = _REQUIRED.match(error.message)
        return f"{match.group(1)} is required" if match else error.message
    if validator == "unevaluatedProperties":
        match = _UNEVALUATED.match(error.message)
        if match:
            return f"unexpected property {match.group(1)}"
    if validator == "type":
        types = value if isinstance(value, list) else [value]
        expected = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        return f"expected {expected}, got {_short(error.instance)}"
    if validator == "enum":
        return f"must be one of {', '.join(str(v) for v in value)} (got {_short(error.instance)})"
    if validator == "const":
        return f"must be {value!r} (got {_short(error.instance)})"
    if validator == "pattern":
        expected = _EXPECTED.get(title or "", f"a string matching {value}")
        return f"expected {expected} (got {_short(error.instance)})"
    if validator in ("minProperties", "maxProperties") and title in _ENTRY_WORDS:
        return _ENTRY_WORDS[title]
    if validator == "minProperties":
        return "must not be empty" if value == 1 else f"must have at least {value} properties"
    if validator == "minItems":
        return "must not be empty" if value == 1 else f"must have at least {value} items"
    if validator == "minLength" and value == 1:
        return "must not be empty"
    if validator in ("oneOf", "anyOf"):
        if "more than one" in error.message or "valid under each of" in error.message:
            return "matches more than one alternative; keep the keys of only one"
        fallback = f"a valid {_humanize(title)}" if title else "a valid value"
        expected = _EXPECTED.get(title or "") or _alternatives(error) or fallback
        return f"expected {expected} (got {_short(error.instance)})"
    if validator is None or validator == "false":
        return "not allowed here"
    if validator == "not":
        return f"{_short(error.instance)} is not allowed here"
    return error.message


def _alternatives(error: ValidationError) -> str | None:
    options = error.validator_value
    if not isinstance(options, list):
        return None
    names: list[str] = []
    for option in options:
        title = option.get("title") if isinstance(option, dict) else None
        if not title:
            return None
        names.append(_EXPECTED.get(title, _humanize(title)))
    return "one of: " + "; ".join(names)
