"""The pinned DSL corpus: example definitions and the CTK's workflow definitions.

They are read from ``../shared/spec/serverless-workflow`` beside the repository.
Without that folder the corpus tests are skipped with a clear message, except in
CI (``CI=true``), where a missing corpus fails them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

SPEC_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "spec" / "serverless-workflow"
EXAMPLES_DIR = SPEC_DIR / "examples"
FEATURES_DIR = SPEC_DIR / "ctk" / "features"

MISSING = "corpus-missing"


def corpus_missing() -> None:
    """Skip (or, in CI, fail) a test that needs the shared DSL corpus."""
    message = f"the pinned DSL corpus is absent: {SPEC_DIR} (it lives in ../shared beside the repository)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def example_files() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("*.yaml")) if EXAMPLES_DIR.is_dir() else []


def ctk_definitions() -> list[tuple[str, str]]:
    """(id, YAML text) of each docstring that follows "a workflow with definition"."""
    found: list[tuple[str, str]] = []
    if not FEATURES_DIR.is_dir():
        return found
    for feature in sorted(FEATURES_DIR.glob("*.feature")):
        lines = feature.read_text(encoding="utf-8").splitlines()
        scenario = "?"
        index = 0
        while index < len(lines):
            line = lines[index]
            if line.strip().startswith("Scenario"):
                scenario = line.split(":", 1)[-1].strip()
            if "a workflow with definition" in line and index + 1 < len(lines):
                opening = lines[index + 1]
                if opening.strip().startswith('"""'):
                    indent = opening[: len(opening) - len(opening.lstrip())]
                    body: list[str] = []
                    index += 2
                    while index < len(lines) and lines[index].strip() != '"""':
                        # Gherkin docstrings lose the indentation of their opening quotes.
                        text = lines[index]
                        body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
                        index += 1
                    slug = re.sub(r"[^a-z0-9]+", "-", scenario.lower()).strip("-")
                    found.append((f"{feature.stem}:{slug}", "\n".join(body) + "\n"))
            index += 1
    return found


def is_missing(value: Any) -> bool:
    """True for the placeholder parameter used when the corpus is absent."""
    return value == MISSING or (isinstance(value, tuple) and value[0] == MISSING)
