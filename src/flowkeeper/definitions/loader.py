"""Loading a workflow definition: parse, check the DSL version, schema, semantics.

Each stage reports every problem it finds (at most :data:`MAX_PROBLEMS`) as a
:class:`Problem` with a JSON pointer, and a failed stage stops the later ones: the
semantic checks assume the shape the schema guarantees.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from flowkeeper.definitions.data_schemas import canonical_json
from flowkeeper.definitions.model import Definition
from flowkeeper.definitions.parsing import MAX_NODES, check_size, parse_text
from flowkeeper.definitions.schema_compiler import workflow_validator
from flowkeeper.definitions.schema_errors import MAX_PROBLEMS, problems_from_errors
from flowkeeper.definitions.semantics import SemanticChecker
from flowkeeper.errors import DefinitionError, Problem

_SUPPORTED_DSL = re.compile(r"^1\.0\.(0|[1-9][0-9]*)$")


def load_definition(source: str | bytes | Mapping[str, Any], *, filename: str | None = None) -> Definition:
    """Parse and validate a DSL document given as YAML/JSON text or as a mapping.

    ``filename`` only prefixes syntax-error messages. Raises :class:`DefinitionError`
    listing what is wrong, each problem with the JSON pointer of the offending node.
    """
    if isinstance(source, Mapping):
        document, text = _from_mapping(source)
    else:
        text = _decode(source, filename) if isinstance(source, bytes) else source
        document = parse_text(text, filename=filename)
    if not isinstance(document, dict):
        raise DefinitionError(
            [Problem("", f"a workflow definition must be a mapping, not {_kind(document)}")]
        )
    if not check_size(document):
        raise DefinitionError([Problem("", f"the document has more than {MAX_NODES} nodes (or a cycle)")])
    _check_dsl_version(document)
    try:
        problems = problems_from_errors(workflow_validator().iter_errors(document))
    except RecursionError:
        problems = [Problem("", "the document is nested too deeply")]
    if problems:
        raise DefinitionError(problems)
    checker = SemanticChecker(document)
    problems = checker.run()
    if problems:
        if len(problems) > MAX_PROBLEMS:
            hidden = len(problems) - (MAX_PROBLEMS - 1)
            problems = [*problems[: MAX_PROBLEMS - 1], Problem("", f"... and {hidden} more problems")]
        raise DefinitionError(problems)
    meta = document["document"]
    digest = hashlib.sha256(canonical_json(document).encode()).hexdigest()
    return Definition(
        namespace=meta["namespace"],
        name=meta["name"],
        version=meta["version"],
        dsl=meta["dsl"],
        document=document,
        source=text,
        content_hash=digest,
        _tasks=checker.tasks,
    )


def read_definition_file(path: str | os.PathLike[str]) -> Definition:
    """Load the definition in the file at ``path`` (YAML or JSON).

    An unreadable file is reported like an invalid document: a
    :class:`DefinitionError` with one problem at pointer ``""``.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            data = file.read()
    except OSError as error:
        reason = error.strerror or str(error)
        raise DefinitionError([Problem("", f"{name}: cannot read the file: {reason}")]) from None
    return load_definition(data, filename=name)


def _kind(value: Any) -> str:
    if value is None:
        return "an empty document"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__} ({value!r})"


def _decode(data: bytes, filename: str | None) -> str:
    try:
        # utf-8-sig: editors on some systems still write a byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        where = f"{filename}: " if filename else ""
        raise DefinitionError(
            [Problem("", f"{where}the document is not UTF-8 text (byte {error.start})")]
        ) from None


def _from_mapping(source: Mapping[str, Any]) -> tuple[Any, str]:
    # A round trip through JSON makes an independent copy of plain JSON data (tuples
    # become lists) and refuses what JSON cannot hold, as a text document would.
    try:
        text = json.dumps(source, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise DefinitionError([Problem("", f"the definition is not JSON data: {error}")]) from None
    except RecursionError:
        raise DefinitionError([Problem("", "the definition is nested too deeply or has a cycle")]) from None
    return json.loads(text), text


def _check_dsl_version(document: dict[str, Any]) -> None:
    meta = document.get("document")
    dsl_value = meta.get("dsl") if isinstance(meta, dict) else None
    if isinstance(dsl_value, bool) or not isinstance(dsl_value, (str, int, float)):
        return  # missing or mistyped: the schema says so in its own words
    dsl = str(dsl_value)
    if not _SUPPORTED_DSL.match(dsl):
        # Checked before the schema: an older document would otherwise drown this
        # one useful message in dozens of schema errors.
        raise DefinitionError(
            [Problem("/document/dsl", f"unsupported DSL version {dsl}; Flowkeeper runs 1.0.x")]
        )
