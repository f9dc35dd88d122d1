"""Fixtures of the background-service tests (see ``outbox_support`` for the outbox's)."""

from __future__ import annotations

from tests.integration.runtime.conftest import engine, engines, functions  # noqa: F401  (fixtures)
from tests.integration.services.outbox_support import rabbitmq_url, receivers  # noqa: F401  (fixtures)
from tests.integration.store.conftest import make  # noqa: F401  (a fixture, used by name)
from tests.support.fixtures import standin, standin_server  # noqa: F401  (fixtures, used by name)
