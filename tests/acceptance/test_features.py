"""Flowkeeper's own scenarios (``tests/features``), in the CTK's step vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_bdd import scenarios

# Requested statically so that the store parametrization (sqlite, postgres) applies.
pytestmark = pytest.mark.usefixtures("scenario")

scenarios(str(Path(__file__).resolve().parents[1] / "features"))
