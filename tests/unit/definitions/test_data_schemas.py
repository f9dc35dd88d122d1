"""validate_data: DSL input/output/export schemas checked at run time."""

from __future__ import annotations

from typing import Any

import pytest

from flowkeeper.definitions import validate_data
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError

PERSON: dict[str, Any] = {
    "format": "json",
    "document": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    },
}


def test_valid_data_passes() -> None:
    validate_data(PERSON, {"name": "Ada", "age": 36}, pointer="/input", what="input")


def test_no_schema_is_a_no_op() -> None:
    validate_data(None, object(), pointer="/input", what="input")


def test_invalid_data_raises_the_validation_error() -> None:
    with pytest.raises(WorkflowError) as caught:
        validate_data(PERSON, {"name": "Ada", "age": -3}, pointer="/input", what="input")
    error = caught.value
    assert error.type == ERROR_TYPE_BASE + "validation"
    assert error.status == 400
    assert error.title == "Validation Error"
    assert error.instance == "/input"
    assert error.detail == "input is invalid: /age: -3 is less than the minimum of 0"
    assert error.to_dict()["instance"] == "/input"


def test_a_problem_at_the_root_has_no_path() -> None:
    with pytest.raises(WorkflowError) as caught:
        validate_data(PERSON, {"age": 1}, pointer="/do/0/getPet/output", what="task output")
    assert caught.value.detail == "task output is invalid: 'name' is a required property"
    assert caught.value.instance == "/do/0/getPet/output"


def test_nested_paths_are_json_pointers() -> None:
    schema = {
        "document": {
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "string"}}},
        }
    }
    with pytest.raises(WorkflowError, match=r"context is invalid: /items/1: 2 is not of type 'string'"):
        validate_data(schema, {"items": ["a", 2]}, pointer="/do/1/x/export", what="context")


def test_format_defaults_to_json_and_dialect_follows_dollar_schema() -> None:
    draft7 = {
        "document": {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "integer"}]}
    }
    validate_data(draft7, [1, "anything"], pointer="/input", what="input")
    with pytest.raises(WorkflowError):
        validate_data(draft7, ["x"], pointer="/input", what="input")


def test_validators_are_compiled_once_per_schema() -> None:
    from flowkeeper.definitions import data_schemas

    data_schemas._compiled.cache_clear()
    for value in range(5):
        validate_data(PERSON, {"name": "x", "age": value}, pointer="/input", what="input")
    same_content = {"document": dict(reversed(list(PERSON["document"].items())))}
    validate_data(same_content, {"name": "y"}, pointer="/input", what="input")
    info = data_schemas._compiled.cache_info()
    assert (info.misses, info.hits) == (1, 5)


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ({"format": "json", "resource": {"endpoint": "https://x/s.json"}}, "has no inline document"),
        ({"document": {"type": 5}}, "not a valid JSON Schema"),
        ({"document": {"$ref": "https://example.com/elsewhere.json"}}, "cannot be resolved"),
    ],
)
def test_unusable_schemas_raise_a_configuration_error(spec: dict[str, Any], phrase: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        validate_data(spec, {}, pointer="/input", what="input")
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert caught.value.instance == "/input"
    assert phrase in (caught.value.detail or "")
