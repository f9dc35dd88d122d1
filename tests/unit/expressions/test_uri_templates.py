"""URI templates in ``endpoint.uri``: RFC 6570 simple expansion from the top level of the data."""

from __future__ import annotations

import pytest

from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from flowkeeper.expressions import expand_uri_template


def test_fields_are_replaced_by_top_level_values() -> None:
    data = {"petId": 42, "kind": "dog"}
    assert expand_uri_template("https://pets.test/{kind}/{petId}", data) == "https://pets.test/dog/42"


def test_a_template_without_fields_is_returned_unchanged() -> None:
    assert expand_uri_template("https://pets.test/pets?x=1", {"x": 2}) == "https://pets.test/pets?x=1"


@pytest.mark.parametrize("data", [{}, {"petId": None}, None, "not an object"])
def test_an_undefined_field_expands_to_nothing(data: object) -> None:
    assert (
        expand_uri_template("https://pets.test/pets/{petId}/photo", data) == "https://pets.test/pets//photo"
    )


@pytest.mark.parametrize(
    ("value", "expanded"),
    [
        ("a b", "a%20b"),
        ("a/b", "a%2Fb"),
        ("x?y=1&z#f", "x%3Fy%3D1%26z%23f"),
        ("50%", "50%25"),
        ("café", "caf%C3%A9"),
        ("-._~", "-._~"),  # unreserved characters stay as they are
    ],
)
def test_values_are_percent_encoded_like_rfc_6570_simple_expansion(value: str, expanded: str) -> None:
    assert expand_uri_template("https://pets.test/{v}", {"v": value}) == f"https://pets.test/{expanded}"


@pytest.mark.parametrize(("value", "expanded"), [(True, "true"), (False, "false"), (7, "7"), (2.5, "2.5")])
def test_scalars_are_written_as_json_would(value: object, expanded: str) -> None:
    assert expand_uri_template("/{v}", {"v": value}) == f"/{expanded}"


def test_dotted_names_reach_into_nested_objects() -> None:
    assert expand_uri_template("/owners/{owner.id}", {"owner": {"id": "o 1"}}) == "/owners/o%201"
    assert expand_uri_template("/owners/{owner.id}", {"owner": "flat"}) == "/owners/"


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}])
def test_an_object_or_array_field_is_an_expression_error(value: object) -> None:
    with pytest.raises(WorkflowError) as excinfo:
        expand_uri_template("https://pets.test/{v}", {"v": value})
    error = excinfo.value.to_dict()
    assert error["type"] == ERROR_TYPE_BASE + "expression"
    assert error["status"] == 400
    assert "{v}" in error["detail"]
