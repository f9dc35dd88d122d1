"""Validation of workflow data against the DSL's inline ``input``/``output``/``export`` schemas.

A DSL schema object is ``{format: json, document: {...}}``. The JSON Schema dialect
is the document's own ``$schema``, draft 2020-12 when absent. ``format`` keywords are
annotations, as the JSON Schema specification says by default. Validators are
compiled once per distinct schema (by its canonical JSON) and kept in a bounded cache,
since the same few schemas are checked on every instance of a definition.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from flowkeeper.definitions.schema_errors import to_pointer
from flowkeeper.errors import WorkflowError, standard_error


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces (hashes are taken of it)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def schema_problem(document: Any) -> tuple[str, str] | None:
    """Why ``document`` is not a usable JSON Schema (pointer inside it, message), or None."""
    if not isinstance(document, (Mapping, bool)):
        return "", "expected a JSON Schema (a mapping)"
    # Checking against the meta-schema costs ~0.5 ms; a definition is loaded again
    # and again (deploy, start, resume) with the same few schemas.
    return _schema_problem(canonical_json(document))


@functools.lru_cache(maxsize=512)
def _schema_problem(canonical: str) -> tuple[str, str] | None:
    schema = json.loads(canonical)
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as error:
        return to_pointer(error.absolute_path), f"not a valid JSON Schema: {error.message}"
    return None


@functools.lru_cache(maxsize=512)
def _compiled(canonical: str) -> Validator:
    document = json.loads(canonical)
    cls = validator_for(document, default=Draft202012Validator)
    cls.check_schema(document)
    return cls(document)


def validate_data(schema_spec: Mapping[str, Any] | None, data: Any, *, pointer: str, what: str) -> None:
    """Validate ``data`` against a DSL schema object; no-op when ``schema_spec`` is None.

    ``what`` names the data in the message ("input", "output", "context"); ``pointer``
    is the component the schema belongs to (``""`` for the workflow, a task reference
    for a task) and becomes the error's ``instance``. Raises the DSL's standard
    ``validation`` :class:`WorkflowError` (status 400), whose detail names the failing
    path and reason, e.g. ``input is invalid: /age: -3 is less than the minimum of 0``.
    """
    if schema_spec is None:
        return
    document = schema_spec.get("document")
    if document is None:
        # Definitions with schema.resource are refused at load time; be explicit anyway.
        raise _error("configuration", f"{what} schema has no inline document", pointer)
    try:
        validator = _compiled(canonical_json(document))
        error = best_match(validator.iter_errors(data))
    except SchemaError as problem:
        raise _error(
            "configuration", f"{what} schema is not a valid JSON Schema: {problem.message}", pointer
        ) from None
    except Unresolvable as problem:
        raise _error(
            "configuration", f"{what} schema has a reference that cannot be resolved: {problem}", pointer
        ) from None
    if error is None:
        return
    path = to_pointer(error.absolute_path)
    where = f"{path}: " if path else ""
    raise _error("validation", f"{what} is invalid: {where}{error.message}", pointer)


def _error(kind: str, detail: str, pointer: str) -> WorkflowError:
    error = standard_error(kind, detail)
    error.instance = pointer
    return error
