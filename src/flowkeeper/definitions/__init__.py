"""Workflow definitions: load, validate (JSON schema + semantic checks), model a DSL document.

Public surface::

    load_definition(source, *, filename=None) -> Definition   # YAML/JSON text, bytes or a mapping
    read_definition_file(path) -> Definition                  # the same, from a file
    Definition                                                # frozen: key, document, content_hash, task_at()
    validate_data(schema_spec, data, *, pointer, what)        # input/output/export schemas at run time
    canonical_json(value) -> str                              # the text content hashes are taken of

Every failure to load is a :class:`flowkeeper.errors.DefinitionError` whose
``problems`` each carry a JSON pointer and a plain-words message; ``validate_data``
raises the DSL's ``validation`` :class:`flowkeeper.errors.WorkflowError` (status 400).
"""

from flowkeeper.definitions.data_schemas import canonical_json, validate_data
from flowkeeper.definitions.loader import load_definition, read_definition_file
from flowkeeper.definitions.model import Definition

__all__ = [
    "Definition",
    "canonical_json",
    "load_definition",
    "read_definition_file",
    "validate_data",
]
