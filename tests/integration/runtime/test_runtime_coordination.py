"""Instances that wait on each other, on events, on timers and on leases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from flowkeeper.errors import ConcurrencyConflict
from flowkeeper.records import BookmarkKind, InstanceRecord, InstanceStatus
from flowkeeper.runtime import CheckpointInput, Engine, Interceptor, Worker, run_to_end
from flowkeeper.store import Store
from tests.integration.runtime.conftest import ADOPTED_EMITTER, GUARD, EngineFactory, deploy, start_and_finish

CHILD = """
do:
  - twice:
      set: {v: '${ .v * 2 }'}
"""

FAILING_CHILD = """
do:
  - boom:
      raise:
        error:
          type: https://example.com/errors/child
          status: 422
          title: child failed
"""


def parent(child: str, *, wait: bool = True) -> str:
    return f"""
    do:
      - delegate:
          run:
            await: {str(wait).lower()}
            workflow:
              namespace: tests
              name: {child}
              version: '1.0.0'
              input:
                v: '${{ .n }}'
      - after:
          set:
            fromChild: '${{ . }}'
    """


async def children_of(store: Store, parent_id: str) -> list[InstanceRecord]:
    page = await store.list_instances()
    return [i for i in page.items if i.parent_id == parent_id]


# -- run: workflow --------------------------------------------------------------------------


async def test_a_parent_waits_for_its_child_and_takes_its_output(engine: Engine, store: Store) -> None:
    await deploy(engine, CHILD, name="child")
    await deploy(engine, parent("child"), name="parent")
    started = await engine.start("tests", "parent", None, {"n": 21})
    await engine.drain()  # nothing claims the child in this process until a worker runs
    waiting = await store.get_instance(started.id)
    assert waiting.status == InstanceStatus.SUSPENDED
    [bookmark] = await store.list_bookmarks(started.id)
    assert bookmark.kind == BookmarkKind.CHILD
    [child] = await children_of(store, started.id)
    assert child.status == InstanceStatus.PENDING
    assert child.input == {"v": 21}

    done = await run_to_end(engine, started.id, limit=GUARD, stop_when_idle=True)
    assert done.status == InstanceStatus.COMPLETED
    assert done.output == {"fromChild": {"v": 42}}
    assert (await store.get_instance(child.id)).status == InstanceStatus.COMPLETED


async def test_a_failing_child_faults_the_parent_task(engine: Engine, store: Store) -> None:
    await deploy(engine, FAILING_CHILD, name="child")
    await deploy(engine, parent("child"), name="parent")
    done = await start_and_finish(engine, "parent", {"n": 1})
    assert done.status == InstanceStatus.FAILED
    assert done.error is not None
    assert (done.error["type"], done.error["status"], done.error["instance"]) == (
        "https://example.com/errors/child",
        422,
        "/do/0/delegate",
    )
    [child] = await children_of(store, done.id)
    assert child.status == InstanceStatus.FAILED


async def test_a_child_started_without_await_lets_the_parent_go_on_at_once(
    engine: Engine, store: Store
) -> None:
    await deploy(engine, CHILD, name="child")
    await deploy(engine, parent("child", wait=False), name="parent")
    started = await engine.start("tests", "parent", None, {"n": 5})
    done = await engine.wait_for(started.id)  # no worker: the parent must not need the child
    assert done.status == InstanceStatus.COMPLETED
    assert done.output == {"fromChild": {"n": 5}}
    [child] = await children_of(store, done.id)
    assert await store.list_bookmarks(done.id) == []
    finished_child = await run_to_end(engine, child.id, limit=GUARD, stop_when_idle=True)
    assert (finished_child.status, finished_child.output) == (InstanceStatus.COMPLETED, {"v": 10})


# -- emit -> listen across instances --------------------------------------------------------


async def test_an_emitted_event_resumes_another_instance_listening_for_it(
    engine: Engine, store: Store
) -> None:
    await deploy(
        engine,
        """
    do:
      - await:
          listen:
            to:
              one:
                with: {type: com.example.adopted}
                correlate:
                  pet:
                    from: .data.pet
                    expect: '${ .pet }'
    """,
        name="listener",
    )
    await deploy(engine, ADOPTED_EMITTER, name="emitter")
    for_rex = await engine.start("tests", "listener", None, {"pet": "Rex"})
    for_fido = await engine.start("tests", "listener", None, {"pet": "Fido"})
    await engine.drain()
    assert (await store.get_instance(for_rex.id)).status == InstanceStatus.SUSPENDED

    emitter = await start_and_finish(engine, "emitter", {"pet": "Rex"})
    assert emitter.status == InstanceStatus.COMPLETED
    resumed = await run_to_end(engine, for_rex.id, limit=GUARD, stop_when_idle=True)
    assert resumed.status == InstanceStatus.COMPLETED
    assert resumed.output == [{"pet": "Rex"}]
    # The other listener's correlation did not match: it still waits.
    assert (await store.get_instance(for_fido.id)).status == InstanceStatus.SUSPENDED
    [outbox] = await store.list_outbox()
    assert outbox.event["type"] == "com.example.adopted"
    assert outbox.instance_id == emitter.id


# -- timers ---------------------------------------------------------------------------------


async def test_a_wait_timer_fires_through_the_worker_on_the_database_clock(
    engine: Engine, store: Store
) -> None:
    await deploy(
        engine,
        """
    do:
      - pause:
          wait: PT0.05S
      - after:
          set: '${ . + {after: true} }'
    """,
    )
    started = await engine.start("tests", "wf", None, {"kept": 1})
    await engine.drain()
    suspended = await store.get_instance(started.id)
    assert suspended.status == InstanceStatus.SUSPENDED
    [timer] = await store.list_timers(started.id)
    assert timer.activity_id == "/do/0/pause"

    fired: list[int] = []

    class Counting(Worker):
        async def fire_timers(self, limit: int = 100) -> int:
            fired.append(await super().fire_timers(limit))
            return fired[-1]

    worker = Counting(engine)

    async def done() -> bool:
        return (await store.get_instance(started.id)).status.is_terminal

    assert await worker.run_until(done, limit=GUARD)
    await worker.drain()
    record = await store.get_instance(started.id)
    assert (record.status, record.output) == (InstanceStatus.COMPLETED, {"kept": 1, "after": True})
    assert sum(fired) == 1
    assert await store.list_timers(started.id) == []
    assert timer.due_at <= await store.now()


# -- leases ---------------------------------------------------------------------------------


class ConflictWatch(Interceptor):
    def __init__(self) -> None:
        self.conflicts: list[ConcurrencyConflict] = []

    async def write_checkpoint(
        self, input: CheckpointInput, next: Callable[[CheckpointInput], Awaitable[InstanceRecord]]
    ) -> InstanceRecord:
        try:
            return await next(input)
        except ConcurrencyConflict as exc:
            self.conflicts.append(exc)
            raise


async def test_a_stale_writer_is_rejected_and_nothing_it_wrote_is_visible(
    engines: EngineFactory, store: Store
) -> None:
    watch = ConflictWatch()
    stale = engines(owner="stale-worker", interceptors=[watch])
    fresh = engines(owner="fresh-worker")
    await deploy(
        stale,
        """
    do:
      - a:
          set: {a: 1}
      - b:
          set: {b: '${ .a + 1 }'}
    """,
    )
    pending = await stale.start("tests", "wf", None, {}, run=False)
    [mine] = await store.claim_instances("stale-worker", timedelta(seconds=-1), 1)  # already expired
    [theirs] = await store.claim_instances("fresh-worker", timedelta(minutes=5), 1)
    assert mine.id == theirs.id == pending.id
    assert theirs.fencing_token > mine.fencing_token

    await stale.run_claimed(mine)
    assert len(watch.conflicts) == 1
    after = await store.get_instance(pending.id)
    assert after == theirs  # not a field changed by the stale writer
    assert after.output is None
    assert await store.get_log(pending.id) == []

    done = await fresh.run_claimed(theirs)
    assert (done.status, done.output) == (InstanceStatus.COMPLETED, {"b": 2})
    assert [e.reference for e in await store.get_log(pending.id)].count("/do/0/a") == 2  # started, completed
