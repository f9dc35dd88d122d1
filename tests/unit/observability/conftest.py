"""Fixtures of the observability tests: a clean logging setup, and real engines on ``store``.

``engines(interceptors)`` builds an :class:`Engine` over the test's store (SQLite and
PostgreSQL, from ``tests/conftest.py``) with a private function registry holding
``double`` (``x -> {"doubled": 2x}``) and ``unavailable`` (raises the DSL communication
error 503, its detail carrying a secret that must never be logged). ``finish`` starts
an instance and returns it once every hook of its run has fired.
"""

from __future__ import annotations

import io
import logging
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.errors import standard_error
from flowkeeper.observability import reset_logging
from flowkeeper.records import InstanceRecord
from flowkeeper.runtime import Engine, Interceptor
from flowkeeper.store import Store
from tests.support.fixtures import standin  # noqa: F401  (a fixture, used by name)

#: A secret that appears in error details and inputs; no log line may ever show it.
SECRET = "s3cr3t-Hunter2-value"

HEADER = """\
document:
  dsl: '1.0.0'
  namespace: tests
  name: {name}
  version: '1.0.0'
"""

#: set -> call a registered function -> set
OK_WORKFLOW = """
do:
  - prepare:
      set: {x: '${ .n + 1 }'}
  - compute:
      call: double
      with:
        x: '${ .x }'
  - finish:
      set: {result: '${ .doubled }'}
"""

#: set -> call a function that fails with 503
FAILING_WORKFLOW = """
do:
  - prepare:
      set: {x: 1}
  - fetch:
      call: unavailable
      with:
        password: '${ .password }'
"""


def definition(name: str, body: str) -> str:
    return HEADER.format(name=name) + textwrap.dedent(body)


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Whatever a test configures is undone afterwards (handlers, levels, structlog)."""
    root = logging.getLogger()
    level = root.level
    yield
    reset_logging()
    root.setLevel(level)


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def functions() -> FunctionRegistry:
    registry = FunctionRegistry(entry_point_group=None)

    def double(x: int) -> dict[str, Any]:
        return {"doubled": x * 2}

    def unavailable(password: str) -> None:
        raise standard_error(
            "communication", f"upstream refused password {password}", status=503, title="Service Unavailable"
        )

    registry.register("double", double, inline=True)
    registry.register("unavailable", unavailable, inline=True)
    return registry


EngineFactory = Callable[[Sequence[Interceptor]], Engine]


@pytest.fixture
async def engines(store: Store, functions: FunctionRegistry) -> AsyncIterator[EngineFactory]:
    built: list[Engine] = []

    def build(interceptors: Sequence[Interceptor]) -> Engine:
        engine = Engine(
            store, Activities(ActivityOptions(timeout=10.0), functions), interceptors=interceptors
        )
        built.append(engine)
        return engine

    yield build
    for engine in built:
        await engine.aclose()


async def deploy_all(engine: Engine, **bodies: str) -> None:
    for name, body in bodies.items():
        await engine.deploy(definition(name, body))


async def finish(engine: Engine, name: str, data: Any = None) -> InstanceRecord:
    """Start ``tests/<name>`` and return its terminal record once its run (and hooks) are done."""
    started = await engine.start("tests", name, None, data)
    done = await engine.wait_for(started.id)
    await engine.drain()  # the run task ends after the last hook: nothing left to fire
    return done
