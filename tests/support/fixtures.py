"""The ``standin`` pytest fixture: one stand-in server per test process, reset before each test.

Use it from any test package with a conftest import::

    from tests.support.fixtures import standin  # noqa: F401  (a fixture, used by name)

or ``pytest_plugins = ["tests.support.fixtures"]`` in the root ``conftest.py``.
The server starts on first use and lives until the process exits (one per xdist
worker); ``standin_server`` gives session-scoped fixtures the same server, not reset.
"""

from __future__ import annotations

import atexit
import threading

import pytest

from tests.support.standin import StandIn, start_standin

_lock = threading.Lock()
_shared: StandIn | None = None


def shared_standin() -> StandIn:
    """The process-wide stand-in, started on first call and stopped at exit."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = start_standin()
            atexit.register(_shared.stop)
        return _shared


@pytest.fixture(scope="session")
def standin_server() -> StandIn:
    """The shared stand-in, for session-scoped fixtures (not reset)."""
    return shared_standin()


@pytest.fixture
def standin() -> StandIn:
    """The shared stand-in with recorded requests, flaky counters and tokens reset."""
    server = shared_standin()
    server.reset()
    return server
