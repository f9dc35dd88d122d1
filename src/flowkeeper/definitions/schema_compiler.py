"""The pinned DSL schema, rewritten once per process into an equivalent fast validator.

Validating against ``schema/workflow.yaml`` as written costs 2-60 ms per document with
``jsonschema``: a task is a ``oneOf`` over twelve task types (a call a ``oneOf`` over
seven call kinds), so every nested task list is validated by every branch at every
level, and each branch closes itself with ``unevaluatedProperties``, which
``jsonschema`` computes by validating the branch's subschemas a second time. The
errors are unreadable for the same reason: one typo yields twelve failed branches.

The rewrite, done in memory on a copy (the packaged file stays byte-for-byte the
pinned one), keeps the set of accepted documents unchanged:

* ``$defs/task`` becomes ``x-flowkeeper-task``, which picks the one branch a task can
  match from its type key (and a call from its ``call`` value) and validates only
  that branch. Branches are mutually exclusive by construction (each requires its
  key and closes its properties), so "exactly one branch valid" is "the chosen
  branch valid". A task with no type key, or two, gets one plain-words error.
* ``unevaluatedProperties: false`` whose evaluated set is statically known (only
  ``properties``, possibly through ``allOf``/``$ref``) becomes
  ``x-flowkeeper-closed`` with that set of names; the same under a ``oneOf`` whose
  branches are all static becomes ``x-flowkeeper-one-of-closed``.
* Local ``$ref`` are replaced by the referenced subschema object itself (the tree
  becomes a graph with cycles, which validation follows lazily along the
  instance), saving a registry look-up per reference.

``tests/unit/definitions`` checks the rewrite against the untouched schema on every
example, CTK definition and a set of broken documents.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.protocols import Validator

from flowkeeper.definitions.parsing import parse_text

TASK_KINDS = ("call", "do", "emit", "for", "fork", "listen", "raise", "run", "set", "switch", "try", "wait")
"""Task type keys, in the order the DSL lists them."""

# Keywords whose value is data, not a subschema: never rewritten.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "required", "x-flowkeeper-closed"})
# Keywords whose value maps names (property names, which could be anything) to subschemas.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})
# Keywords that make the set of evaluated properties depend on the instance.
_DYNAMIC_KEYWORDS = frozenset(
    {
        "oneOf", "anyOf", "if", "then", "else", "dependentSchemas", "patternProperties",
        "additionalProperties", "$ref", "$dynamicRef", "x-flowkeeper-task",
        "x-flowkeeper-one-of-closed",
    }
)  # fmt: skip


def load_pinned_schema() -> dict[str, Any]:
    """The DSL schema exactly as pinned (a fresh copy on each call)."""
    return copy.deepcopy(_pinned_schema())


@functools.cache
def _pinned_schema() -> dict[str, Any]:
    text = resources.files("flowkeeper.definitions").joinpath("schema/workflow.yaml").read_text("utf-8")
    schema = parse_text(text, filename="workflow.yaml")
    assert isinstance(schema, dict)
    return schema


@functools.cache
def reference_validator() -> Validator:
    """A validator for the schema as written: slow, used to check the fast one agrees."""
    return Draft202012Validator(_pinned_schema())


@functools.cache
def workflow_validator() -> Validator:
    """The compiled, cached validator of workflow documents (built once per process)."""
    schema = compile_schema(load_pinned_schema())
    validator: Validator = _FastValidator(schema)
    return validator


def compile_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the pinned schema as described in the module docstring."""
    defs = schema["$defs"]
    dispatch: dict[str, Any] = {kind: {"$ref": f"#/$defs/{kind}Task"} for kind in TASK_KINDS}
    calls: dict[str, Any] = {}
    for index, branch in enumerate(defs["callTask"]["oneOf"]):
        call = branch["allOf"][1]["properties"]["call"]
        calls[call.get("const", "*")] = {"$ref": f"#/$defs/callTask/oneOf/{index}"}
    dispatch["call"] = calls
    # The outer unevaluatedProperties is redundant: every branch closes itself.
    defs["task"] = {"title": "Task", "x-flowkeeper-task": dispatch}
    for name, definition in defs.items():
        if isinstance(definition, dict):
            definition.setdefault("title", name)
    inliner = _Inliner(schema)
    compiled = {key: inliner.inline(value) for key, value in schema.items() if key != "$defs"}
    _close_all(compiled, set())
    return compiled


class _Inliner:
    """Replaces local ``$ref`` by the shared, already rewritten target object."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.memo: dict[str, dict[str, Any]] = {}

    def target(self, ref: str) -> dict[str, Any]:
        if ref in self.memo:
            return self.memo[ref]
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, not {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        placeholder: dict[str, Any] = {}
        # Registered before recursing so that cycles (task -> taskList -> task) close.
        self.memo[ref] = placeholder
        placeholder.update(self.inline(node))
        return placeholder

    def inline(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = self.target(node["$ref"])
            if all(k in ("$ref", "title", "description") for k in node):
                return target
            # "$ref beside other keywords" means "all of them" in draft 2020-12.
            rest = {k: v for k, v in node.items() if k != "$ref"}
            node = {**rest, "allOf": [{"$ref": node["$ref"]}, *rest.get("allOf", [])]}
        return {k: self._inline_keyword(k, v) for k, v in node.items()}

    def _inline_keyword(self, keyword: str, value: Any) -> Any:
        if keyword in _DATA_KEYWORDS:
            return value
        if keyword in _SCHEMA_MAPS and isinstance(value, dict):
            return {name: self.inline(sub) for name, sub in value.items()}
        return self.inline(value)


def _static_names(node: Any) -> set[str] | None:
    """Names of the properties ``node`` evaluates, or None when that depends on the instance."""
    if not isinstance(node, dict):
        return None if node is not True else set()
    if any(k in node for k in _DYNAMIC_KEYWORDS):
        return None
    if node.get("unevaluatedProperties", False) is not False:
        return None
    names = set(node.get("properties", ()))
    for sub in node.get("allOf", ()):
        sub_names = _static_names(sub)
        if sub_names is None:
            return None
        names |= sub_names
    return names


def _close_all(node: Any, seen: set[int]) -> None:
    if isinstance(node, list):
        for item in node:
            _close_all(item, seen)
        return
    if not isinstance(node, dict) or id(node) in seen:
        return
    seen.add(id(node))
    for key, value in list(node.items()):
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for sub in value.values():
                _close_all(sub, seen)
        elif key not in _DATA_KEYWORDS:
            _close_all(value, seen)
    if node.get("unevaluatedProperties") is not False:
        return
    del node["unevaluatedProperties"]
    names = _static_names(node)
    if names is not None:
        node["x-flowkeeper-closed"] = frozenset(names)
        return
    rest = {k: v for k, v in node.items() if k != "oneOf"}
    own = _static_names(rest)
    branches = node.get("oneOf")
    branch_names = [_static_names(b) for b in branches] if isinstance(branches, list) else [None]
    if own is not None and all(n is not None for n in branch_names):
        del node["oneOf"]
        node["x-flowkeeper-one-of-closed"] = (branches, [own | n for n in branch_names if n is not None])
        return
    node["unevaluatedProperties"] = False  # left as written: correct, only slower


# --- the keywords -------------------------------------------------------------------


def _task(
    validator: Any, dispatch: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        yield ValidationError(
            f"{instance!r} is not of type 'object'", validator="type", validator_value="object"
        )
        return
    kinds = [kind for kind in TASK_KINDS if kind in instance]
    if "for" in kinds and "do" in kinds:
        kinds.remove("do")  # a for task's body is its "do"
    if len(kinds) != 1:
        found = f"; found {' and '.join(kinds)}" if kinds else ""
        yield ValidationError(
            f"not a valid task: expected exactly one of {', '.join(TASK_KINDS)}{found}",
            validator="x-flowkeeper-task",
        )
        return
    branch = dispatch[kinds[0]]
    if kinds[0] == "call":
        call = instance["call"]
        branch = branch.get(call, branch["*"]) if isinstance(call, str) else branch["*"]
    yield from validator.descend(instance, branch, schema_path=kinds[0])


def _unexpected(instance: dict[str, Any], allowed: frozenset[str] | set[str]) -> Iterator[ValidationError]:
    extras = [key for key in instance if key not in allowed]
    if extras:
        listed = ", ".join(repr(e) for e in extras)
        yield ValidationError(
            f"unexpected propert{'ies' if len(extras) > 1 else 'y'} {listed} "
            f"(allowed: {', '.join(sorted(allowed))})",
            validator="x-flowkeeper-closed",
            validator_value=sorted(allowed),
        )


def _closed(validator: Any, allowed: frozenset[str], instance: Any, schema: Any) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        yield from _unexpected(instance, allowed)


def _one_of_closed(
    validator: Any, spec: tuple[list[Any], list[set[str]]], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    branches, names = spec
    valid: list[int] = []
    errors: list[ValidationError] = []
    for index, branch in enumerate(branches):
        branch_errors = list(validator.descend(instance, branch, schema_path=index))
        if branch_errors:
            errors.extend(branch_errors)
        else:
            valid.append(index)
    if not valid:
        yield ValidationError(
            f"{instance!r} is not valid under any of the given schemas",
            context=errors,
            validator="oneOf",
            validator_value=branches,
        )
    elif len(valid) > 1:
        yield ValidationError(
            f"{instance!r} matches more than one alternative", validator="oneOf", validator_value=branches
        )
    elif isinstance(instance, dict):
        yield from _unexpected(instance, names[valid[0]])


_FastValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {
        "x-flowkeeper-task": _task,
        "x-flowkeeper-closed": _closed,
        "x-flowkeeper-one-of-closed": _one_of_closed,
    },
)
