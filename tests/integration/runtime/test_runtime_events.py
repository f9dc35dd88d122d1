"""Events from outside: retention for late listeners, exactly-once, control operations."""

from __future__ import annotations

from typing import Any

import pytest

from flowkeeper.errors import StoreUnavailable
from flowkeeper.records import InstanceStatus
from flowkeeper.runtime import Engine, run_to_end
from tests.integration.runtime.conftest import GUARD, deploy

LATE_LISTENER = """
do:
  - prepare:
      wait: PT0.2S
  - approval:
      listen:
        to:
          one:
            with: {type: com.example.approved.v1}
            correlate:
              order: {from: .data.order, expect: '${ .order }'}
  - done:
      set:
        approvedBy: ${ .[0].by }
"""


def approval(order: str, event_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/tests",
        "type": "com.example.approved.v1",
        "data": {"order": order, "by": "ops"},
    }


async def test_an_event_that_arrives_before_the_listen_still_resumes_it(engine: Engine) -> None:
    await deploy(engine, LATE_LISTENER)
    started = await engine.start("tests", "wf", None, {"order": "o-1"})
    # The instance is still in its `wait`: nobody listens yet, so the event is kept.
    result = await engine.publish(approval("o-1", "e-1"))
    assert (result.matched, result.duplicate) == (0, False)
    finished = await run_to_end(engine, started.id, limit=GUARD)
    assert finished.status == InstanceStatus.COMPLETED
    assert finished.output == {"approvedBy": "ops"}


async def test_a_kept_event_resumes_only_its_own_correlation(engine: Engine) -> None:
    await deploy(engine, LATE_LISTENER)
    mine = await engine.start("tests", "wf", None, {"order": "o-1"})
    other = await engine.start("tests", "wf", None, {"order": "o-2"})
    await engine.publish(approval("o-1", "e-1"))
    assert (await run_to_end(engine, mine.id, limit=GUARD)).status == InstanceStatus.COMPLETED
    still = await run_to_end(engine, other.id, limit=GUARD, stop_when_idle=True)
    assert still.status == InstanceStatus.SUSPENDED


async def test_a_duplicate_event_resumes_nothing(engine: Engine) -> None:
    await deploy(engine, LATE_LISTENER)
    first = await engine.start("tests", "wf", None, {"order": "o-1"})
    second = await engine.start("tests", "wf", None, {"order": "o-1"})
    assert not (await engine.publish(approval("o-1", "e-1"))).duplicate
    again = await engine.publish(approval("o-1", "e-1"))
    assert (again.matched, again.duplicate) == (0, True)
    # Both instances were waiting for order o-1: one event, one delivery each.
    for instance in (first, second):
        assert (await run_to_end(engine, instance.id, limit=GUARD)).status == InstanceStatus.COMPLETED


IMMEDIATE_LISTENER = """
do:
  - approval:
      listen:
        to:
          one:
            with: {type: com.example.approved.v1}
            correlate:
              order: {from: .data.order, expect: '${ .order }'}
  - done:
      set:
        approvedBy: ${ .[0].by }
"""


async def test_a_retried_publish_delivers_what_a_failed_one_kept(engine: Engine) -> None:
    # The first publish keeps the event, then the database goes away before the
    # delivery (the client gets a 503 and retries): the retry, a duplicate by its id,
    # must still resume the instance, and only once.
    await deploy(engine, IMMEDIATE_LISTENER)
    started = await engine.start("tests", "wf", None, {"order": "o-1"})
    await engine.drain()
    store = engine.store
    real = store.deliver_and_claim

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("database unavailable during deliver_event: connection reset")

    store.deliver_and_claim = unavailable  # type: ignore[method-assign]
    try:
        with pytest.raises(StoreUnavailable):
            await engine.publish(approval("o-1", "e-1"))
    finally:
        store.deliver_and_claim = real  # type: ignore[method-assign]
    retried = await engine.publish(approval("o-1", "e-1"))
    assert (retried.matched, retried.duplicate) == (1, True)
    again = await engine.publish(approval("o-1", "e-1"))
    assert (again.matched, again.duplicate) == (0, True)
    finished = await run_to_end(engine, started.id, limit=GUARD)
    assert finished.status == InstanceStatus.COMPLETED
    assert finished.output == {"approvedBy": "ops"}
