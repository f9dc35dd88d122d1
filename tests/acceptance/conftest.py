"""Acceptance scenarios (Gherkin, pytest-bdd), each run on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.acceptance.steps import *  # noqa: F403  (step definitions are found by name)
from tests.acceptance.steps import Scenario
from tests.support.fixtures import standin  # noqa: F401  (a fixture, used by name)
from tests.support.standin import StandIn


@pytest.fixture
def scenario(standin: StandIn, store_url: str) -> Scenario:  # noqa: F811
    return Scenario(standin, store_url)
