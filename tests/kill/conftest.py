"""Fixtures of the kill tests: the loopback stand-in and this test's engine processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kill.processes import Processes
from tests.support.fixtures import standin  # noqa: F401  (a fixture, used by name)


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    """Driver processes of this test, all killed and reaped at teardown."""
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        await procs.close()
