"""Fixtures of the activities tests: the shared stand-in and a fresh ``Activities`` per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from tests.support.fixtures import standin, standin_server  # noqa: F401  (fixtures, used by name)


@pytest.fixture
async def activities() -> AsyncIterator[Activities]:
    """Activities with a short whole-call timeout and an empty function registry."""
    performer = Activities(ActivityOptions(timeout=10.0), FunctionRegistry(entry_point_group=None))
    yield performer
    await performer.aclose()
