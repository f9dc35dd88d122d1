"""The Definition model: identity, content hash, source, task references."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from flowkeeper.definitions import Definition, canonical_json, load_definition

NESTED = """\
document:
  dsl: '1.0.3'
  namespace: shop
  name: order
  version: '2.1.0'
use:
  functions:
    audit:
      call: http
      with: {method: post, endpoint: 'https://audit.example.com'}
do:
  - tryGetPet:
      try:
        - getPet:
            call: http
            with: {method: get, endpoint: 'https://pets.example.com/pets/1'}
      catch:
        do:
          - recover: {set: {pet: null}}
  - f:
      fork:
        branches:
          - a: {set: {x: 1}}
          - b:
              do:
                - deep: {wait: PT1S}
  - loop:
      for: {in: '.items'}
      do:
        - each: {call: audit}
  - sub/task: {set: {y: 2}}
"""


@pytest.fixture(scope="module")
def nested() -> Definition:
    return load_definition(NESTED, filename="order.yaml")


def test_identity_fields(nested: Definition) -> None:
    assert (nested.namespace, nested.name, nested.version, nested.dsl) == ("shop", "order", "2.1.0", "1.0.3")
    assert nested.key == ("shop", "order", "2.1.0")
    assert nested.source == NESTED
    assert nested.document["document"]["name"] == "order"


def test_content_hash_is_sha256_of_canonical_json(nested: Definition) -> None:
    canonical = json.dumps(nested.document, sort_keys=True, separators=(",", ":"))
    assert canonical_json(nested.document) == canonical
    assert nested.content_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_content_hash_ignores_formatting_and_key_order() -> None:
    compact = load_definition(
        "do: [{a: {set: {y: 2, x: 1}}}]\ndocument: {version: '0.1.0', name: n, namespace: t, dsl: '1.0.0'}\n"
    )
    spread = load_definition(
        "# a comment\ndocument:\n  dsl: '1.0.0'\n  namespace: t\n  name: n\n  version: '0.1.0'\n"
        "do:\n  - a:\n      set:\n        x: 1\n        y: 2\n"
    )
    assert compact.content_hash == spread.content_hash
    assert compact == spread, "equality is identity + content"
    assert hash(compact) == hash(spread)


def test_a_changed_document_changes_the_hash(nested: Definition) -> None:
    other = load_definition(NESTED.replace("x: 1", "x: 2"))
    assert other.key == nested.key
    assert other.content_hash != nested.content_hash
    assert other != nested


def test_mapping_input_gets_a_json_source_and_an_independent_copy(nested: Definition) -> None:
    mapping: dict[str, Any] = json.loads(json.dumps(nested.document))
    definition = load_definition(mapping)
    assert json.loads(definition.source) == mapping
    assert definition.content_hash == nested.content_hash
    mapping["do"].clear()
    assert definition.document["do"], "later changes to the caller's mapping do not leak in"


def test_mapping_input_with_tuples_and_non_json_values() -> None:
    base = {"document": {"dsl": "1.0.0", "namespace": "t", "name": "n", "version": "1.0.0"}}
    assert load_definition({**base, "do": ({"a": {"wait": "PT1S"}},)}).document["do"] == [
        {"a": {"wait": "PT1S"}}
    ]
    with pytest.raises(Exception, match="not JSON data") as caught:
        load_definition({**base, "do": [{"a": {"set": {"when": object()}}}]})
    assert caught.value.__class__.__name__ == "DefinitionError"


def test_definition_is_frozen(nested: Definition) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        nested.name = "other"  # type: ignore[misc]
    assert not hasattr(nested, "__dict__"), "slots"


@pytest.mark.parametrize(
    ("reference", "expected_key"),
    [
        ("/do/0/tryGetPet", "try"),
        ("/do/0/tryGetPet/try/0/getPet", "call"),
        ("/do/0/tryGetPet/catch/do/0/recover", "set"),
        ("/do/1/f", "fork"),
        ("/do/1/f/fork/branches/0/a", "set"),
        ("/do/1/f/fork/branches/1/b", "do"),
        ("/do/1/f/fork/branches/1/b/do/0/deep", "wait"),
        ("/do/2/loop", "for"),
        ("/do/2/loop/do/0/each", "call"),
        ("/do/3/sub~1task", "set"),
        ("/use/functions/audit", "call"),
    ],
)
def test_task_at_resolves_references(nested: Definition, reference: str, expected_key: str) -> None:
    body = nested.task_at(reference)
    assert expected_key in body
    assert nested.task_at(reference) is body, "the same (cached) body each time"


def test_task_at_returns_the_body_inside_the_document(nested: Definition) -> None:
    assert (
        nested.task_at("/do/0/tryGetPet/try/0/getPet")
        is nested.document["do"][0]["tryGetPet"]["try"][0]["getPet"]
    )
    assert (
        nested.task_at("/do/0/tryGetPet/try/0/getPet")["with"]["endpoint"]
        == "https://pets.example.com/pets/1"
    )


@pytest.mark.parametrize(
    "reference", ["/do/9/nothing", "/do/0/getPet", "/do/0/tryGetPet/try", "", "/document"]
)
def test_task_at_unknown_reference(nested: Definition, reference: str) -> None:
    with pytest.raises(KeyError, match="no task at"):
        nested.task_at(reference)


def test_task_references_lists_every_task(nested: Definition) -> None:
    references = nested.task_references()
    assert len(references) == 11
    assert references[0] == "/use/functions/audit"
    assert "/do/1/f/fork/branches/1/b/do/0/deep" in references


def test_repr_stays_short(nested: Definition) -> None:
    text = repr(nested)
    assert "shop" in text
    assert nested.content_hash in text
    assert "getPet" not in text, "the document is left out of the repr"
