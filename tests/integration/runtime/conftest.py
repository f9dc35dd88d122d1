"""Fixtures of the runtime tests: real engines on the ``store`` (SQLite and PostgreSQL).

``engines(...)`` builds an :class:`Engine` over the test's store with real
``Activities`` (a private function registry, the loopback ``standin`` for HTTP) and
closes every engine it built at teardown. ``deploy`` takes the YAML after the
``document`` header.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.records import DefinitionRecord, InstanceRecord
from flowkeeper.runtime import Engine, Interceptor, run_to_end
from flowkeeper.store import Store
from tests.support.fixtures import standin, standin_server  # noqa: F401  (fixtures, used by name)

#: The longest any run may take before the test counts it as stuck (a guard, not a measurement).
GUARD = 30.0

#: Emits one ``com.example.adopted`` event whose data names the input's ``pet``.
ADOPTED_EMITTER = """
do:
  - announce:
      emit:
        event:
          with:
            source: https://tests
            type: com.example.adopted
            data:
              pet: '${ .pet }'
"""

HEADER = """\
document:
  dsl: '1.0.0'
  namespace: tests
  name: {name}
  version: '{version}'
"""


def definition(body: str, name: str = "wf", version: str = "1.0.0") -> str:
    """A definition's YAML: the ``document`` header, then ``body``."""
    return HEADER.format(name=name, version=version) + textwrap.dedent(body)


async def deploy(engine: Engine, body: str, name: str = "wf", version: str = "1.0.0") -> DefinitionRecord:
    record, _ = await engine.deploy(definition(body, name, version))
    return record


async def start_and_finish(engine: Engine, name: str = "wf", data: Any = None) -> InstanceRecord:
    """Start the latest ``tests/<name>`` and work until it ends (or the guard runs out)."""
    started = await engine.start("tests", name, None, data)
    return await run_to_end(engine, started.id, limit=GUARD, stop_when_idle=True)


EngineFactory = Callable[..., Engine]


@pytest.fixture
def functions() -> FunctionRegistry:
    """A function registry of the test's own (no entry point discovery)."""
    return FunctionRegistry(entry_point_group=None)


@pytest.fixture
async def engines(store: Store, functions: FunctionRegistry) -> AsyncIterator[EngineFactory]:
    """``engines(secrets=..., interceptors=..., owner=..., lease=...)`` -> a new Engine on ``store``."""
    built: list[Engine] = []

    def build(
        *,
        secrets: Mapping[str, Any] | None = None,
        interceptors: Sequence[Interceptor] = (),
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=30),
    ) -> Engine:
        engine = Engine(
            store,
            Activities(ActivityOptions(timeout=10.0), functions),
            secrets=secrets,
            interceptors=interceptors,
            owner=owner,
            lease=lease,
        )
        built.append(engine)
        return engine

    yield build
    for engine in built:
        await engine.aclose()


@pytest.fixture
def engine(engines: EngineFactory) -> Engine:
    """An engine with no secrets and no interceptors."""
    return engines()
