"""Fixtures for the definitions tests (the corpus itself is in ``corpus.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.definitions.corpus import MISSING, ctk_definitions, example_files


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "example_path" in metafunc.fixturenames:
        files: list[Any] = example_files() or [MISSING]
        metafunc.parametrize("example_path", files, ids=[getattr(f, "stem", str(f)) for f in files])
    if "ctk_definition" in metafunc.fixturenames:
        definitions: list[Any] = ctk_definitions() or [(MISSING, "")]
        metafunc.parametrize("ctk_definition", definitions, ids=[d[0] for d in definitions])


@pytest.fixture
def header() -> str:
    """A valid ``document:`` block to prefix small test documents with."""
    return "document: {dsl: '1.0.0', namespace: test, name: sample, version: '0.1.0'}\n"
