"""Every pinned example and CTK definition loads, or is refused naming its unsupported feature.

Also checks that the rewritten (fast) schema accepts exactly what the pinned schema
accepts, on the corpus and on mutations of it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.definitions import load_definition
from flowkeeper.definitions.parsing import parse_text
from flowkeeper.definitions.schema_compiler import reference_validator, workflow_validator
from flowkeeper.errors import DefinitionError
from tests.unit.definitions.corpus import corpus_missing, ctk_definitions, example_files, is_missing

UNSUPPORTED_CALLS = ("grpc", "asyncapi", "a2a", "mcp")


def _walk(value: Any, parent: str | None = None) -> Iterator[tuple[str | None, dict[str, Any]]]:
    if isinstance(value, dict):
        yield parent, value
        for key, child in value.items():
            yield from _walk(child, key)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child, parent)


def unsupported_features(document: dict[str, Any]) -> list[str]:
    """Phrases the refusal must contain, found by looking at the document itself."""
    phrases: list[str] = []
    for parent, node in _walk(document):
        if parent == "run" and "container" in node:
            phrases.append("run: container is not supported")
        if node.get("call") in UNSUPPORTED_CALLS and "with" in node:
            phrases.append(f"call: {node['call']} is not supported")
        if parent == "use" and "extensions" in node:
            phrases.append("extensions (use.extensions) are not supported")
        if parent == "schema" and "resource" in node:
            phrases.append("external schemas (schema.resource) are not supported")
    return phrases


def test_example(example_path: Path | str) -> None:
    if is_missing(example_path):
        corpus_missing()
    assert isinstance(example_path, Path)
    text = example_path.read_text(encoding="utf-8")
    expected = unsupported_features(parse_text(text))
    if not expected:
        definition = load_definition(text, filename=example_path.name)
        assert definition.document["document"]["name"] == definition.name
        return
    with pytest.raises(DefinitionError) as caught:
        load_definition(text, filename=example_path.name)
    messages = [problem.message for problem in caught.value.problems]
    for phrase in expected:
        assert any(phrase in message for message in messages), (phrase, messages)
    assert all("not supported" in message for message in messages), messages


def test_ctk_definition(ctk_definition: tuple[str, str]) -> None:
    if is_missing(ctk_definition):
        corpus_missing()
    _, text = ctk_definition
    definition = load_definition(text)
    assert definition.dsl.startswith("1.0.")
    assert definition.task_references(), "a CTK workflow has at least one task"


def test_the_corpus_holds_what_source_md_says() -> None:
    examples, definitions = example_files(), ctk_definitions()
    if not examples or not definitions:
        corpus_missing()
    assert len(examples) == 66
    assert len(definitions) == 21


# --- the fast schema agrees with the pinned schema ------------------------------------


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nodes(child, (*path, index))


_REPLACEMENTS: tuple[Any, ...] = (42, "x", "${ . }", [], {}, True, "PT1S", {"uri": "http://x"})


def _mutations(document: dict[str, Any]) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    for path, node in _nodes(document):
        if isinstance(node, dict):
            found.append(("set", path, "bogus", 1))
            for key in node:
                found.append(("delete", path, key))
                found.extend(("set", path, key, value) for value in _REPLACEMENTS)
            found.extend(("set", path, key, "x") for key in ("call", "do", "set", "with", "then", "catch"))
        elif isinstance(node, list):
            found.append(("append", path, {}))
            found.append(("append", path, {"extra": {"set": {"x": 1}}}))
    return found


def _apply(document: dict[str, Any], mutation: tuple[Any, ...]) -> dict[str, Any]:
    mutated = copy.deepcopy(document)
    target: Any = mutated
    for part in mutation[1]:
        target = target[part]
    if mutation[0] == "set":
        target[mutation[2]] = mutation[3]
    elif mutation[0] == "delete":
        del target[mutation[2]]
    else:
        target.append(mutation[2])
    return mutated


def _corpus_documents() -> list[tuple[str, dict[str, Any]]]:
    texts = [(path.stem, path.read_text(encoding="utf-8")) for path in example_files()]
    texts += ctk_definitions()
    return [(name, parse_text(text)) for name, text in texts]


def test_fast_schema_agrees_with_the_pinned_schema_on_mutated_documents() -> None:
    documents = _corpus_documents()
    if not documents:
        corpus_missing()
    fast, reference = workflow_validator(), reference_validator()
    rng = random.Random(20260115)  # fixed: the same sample every run
    disagreements = []
    checked = 0
    for name, document in documents:
        mutations = _mutations(document)
        for mutation in [None, *rng.sample(mutations, min(6, len(mutations)))]:
            candidate = document if mutation is None else _apply(document, mutation)
            checked += 1
            if fast.is_valid(candidate) != reference.is_valid(candidate):
                disagreements.append((name, mutation))
    assert checked > 500
    assert disagreements == []


TRICKY_TASKS = {
    "two-kinds": "{set: {x: 1}, wait: PT1S}",
    "for-with-do": "{for: {in: .x}, do: [{b: {wait: PT1S}}]}",
    "for-without-do": "{for: {in: .x}}",
    "call-not-string": "{call: 5}",
    "extra-http-argument": "{call: http, with: {method: get, endpoint: 'https://x', extra: 1}}",
    "custom-call": "{call: myFunction, with: {anything: [1, 2]}}",
    "two-backoffs": "{try: [{b: {wait: PT1S}}], catch: {retry: {backoff: {linear: {}, constant: {}}}}}",
    "two-processes": "{run: {shell: {command: ls}, script: {language: js, code: '1'}}}",
    "listen-foreach-bad-wait": "{listen: {to: {one: {with: {type: t}}}}, foreach: {do: [{b: {wait: 5}}]}}",
    "auth-use-and-basic": "{call: http, with: {method: get, endpoint: {uri: 'https://x', "
    "authentication: {use: x, basic: {use: s}}}}}",
    "basic-without-password": "{call: http, with: {method: get, endpoint: {uri: 'https://x', "
    "authentication: {basic: {username: u}}}}}",
}


@pytest.mark.parametrize("task", list(TRICKY_TASKS.values()), ids=list(TRICKY_TASKS))
def test_fast_schema_agrees_on_tricky_tasks(task: str) -> None:
    document = parse_text(
        f"document: {{dsl: '1.0.0', namespace: t, name: t, version: '1.0.0'}}\ndo:\n  - a: {task}\n"
    )
    assert workflow_validator().is_valid(document) == reference_validator().is_valid(document)


def test_a_missing_corpus_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="pinned DSL corpus is absent"):
        corpus_missing()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="pinned DSL corpus is absent"):
        corpus_missing()
