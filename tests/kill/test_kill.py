"""Kill tests: SIGKILL a real engine process mid-run, resume on the same database in another.

DESIGN.md, "Execution model": the engine checkpoints after every activity with an
effect outside the process, so a crash never repeats a completed one; a dead worker's
leases expire and another process picks its instances up; external calls are made at
least once, each with a stable ``Idempotency-Key``.

Each test runs process A (``driver.py start``: deploy, start instances, work on them),
waits for a condition in the database or at the loopback stand-in, SIGKILLs A, then
runs process B (``driver.py resume``: work until nothing is left non-terminal), and
checks every instance completed and what the stand-in received. Children run with a
2 s lease (``FLOWKEEPER__ENGINE__LEASE_DURATION``) and a 200 ms poll; see ``processes``.
On SQLite (a file under ``tmp_path``) and PostgreSQL, through ``store_url``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.records import InstanceStatus, LogEntry
from flowkeeper.store import Store
from tests.kill.processes import Child, Processes, wait_until
from tests.support.standin import RecordedRequest, StandIn

pytestmark = pytest.mark.slow

WAIT_DEFINITION = """\
document: {dsl: '1.0.0', namespace: kill, name: wait-then-set, version: '1.0.0'}
do:
  - before:
      set:
        n: '${ .n }'
        before: true
  - pause:
      wait: PT2S
  - after:
      set:
        n: '${ .n }'
        before: '${ .before }'
        after: true
        id: '${ $workflow.id }'
"""

ITEMS = 30
#: The ``for`` body: one recorded POST per item (the effect that must not be repeated),
#: then a short call to ``/slow``. The second call paces the loop, so that the kill,
#: taken as soon as 10 POSTs arrived, lands mid-loop however fast the machine is; it
#: is an outside effect too (a checkpoint after each), and it is not recorded under
#: ``/rec/kill``.
FOR_DEFINITION = """\
document: {dsl: '1.0.0', namespace: kill, name: for-calls, version: '1.0.0'}
do:
  - loop:
      for:
        in: '${ [range(0; %(items)d)] }'
      do:
        - record:
            call: http
            with:
              method: post
              endpoint:
                uri: '${ "%(base)s/rec/kill/" + $workflow.id + "/" + ($item|tostring) }'
              body:
                instance: '${ $workflow.id }'
                item: '${ $item }'
        - pace:
            call: http
            with:
              method: get
              endpoint: '%(base)s/slow?ms=40'
  - finish:
      set:
        done: true
        id: '${ $workflow.id }'
"""
RECORD_TASK = "/do/0/loop/do/0/record"

SLOW_MS = 3000
SLOW_DEFINITION = """\
document: {dsl: '1.0.0', namespace: kill, name: slow-call, version: '1.0.0'}
do:
  - before:
      set:
        step: before
  - slowCall:
      call: http
      with:
        method: get
        endpoint:
          uri: '${ "%(base)s/slow?ms=%(ms)d&instance=" + $workflow.id }'
  - after:
      set:
        slow: '${ .slow }'
        ms: '${ .ms }'
        id: '${ $workflow.id }'
"""
SLOW_TASK = "/do/1/slowCall"


# -- helpers ----------------------------------------------------------------------------------


def write_definition(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


async def start_process(
    processes: Processes, store_url: str, definition: str, data: Any, count: int
) -> Child:
    return await processes.spawn(
        "A",
        "start",
        "--database",
        store_url,
        "--definition",
        definition,
        "--input",
        json.dumps(data),
        "--count",
        str(count),
    )


async def resume_process(processes: Processes, store_url: str) -> dict[str, Any]:
    """Run process B to its end; it must exit 0 with every instance terminal."""
    b = await processes.spawn("B", "resume", "--database", store_url)
    code = await processes.finish(b)
    assert code == 0, f"the resuming process failed\n{b.describe()}"
    lines = b.lines()
    assert lines, f"the resuming process printed no summary\n{b.describe()}"
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def events(log: list[LogEntry], reference: str, event: str) -> int:
    return sum(1 for e in log if e.reference == reference and e.event == event)


def key_of(request: RecordedRequest) -> str | None:
    return request.headers.get("idempotency-key")


def ids_printed(child: Child, count: int) -> list[str]:
    ids = child.lines()
    assert len(ids) == count, f"expected {count} instance ids on stdout\n{child.describe()}"
    return ids


# -- the tests --------------------------------------------------------------------------------


async def test_kill_during_wait_resumes_every_instance(
    store: Store, store_url: str, processes: Processes, tmp_path: Path
) -> None:
    """Five instances parked in a ``wait``; A dies; B fires the timers and finishes them all."""
    count = 5
    definition = write_definition(tmp_path, "wait.yaml", WAIT_DEFINITION)
    a = await start_process(processes, store_url, definition, {"n": 7}, count)

    async def all_suspended() -> bool:
        ids = a.lines()
        if len(ids) < count:
            return False
        for instance_id in ids:
            if (await store.get_instance(instance_id)).status != InstanceStatus.SUSPENDED:
                return False
        return True

    await wait_until(all_suspended, f"{count} instances suspended in their wait", watch=a)
    await processes.kill(a)
    ids = ids_printed(a, count)

    # The kill landed during the wait: each instance is still parked on its timer.
    for instance_id in ids:
        record = await store.get_instance(instance_id)
        timers = await store.list_timers(instance_id)
        assert record.status == InstanceStatus.SUSPENDED and timers, (
            f"instance {instance_id} was {record.status} with timers {timers} at the kill: "
            f"the kill did not land during the wait\n{a.describe()}"
        )

    summary = await resume_process(processes, store_url)
    assert {i["id"]: i["status"] for i in summary["instances"]} == dict.fromkeys(ids, "completed"), summary

    for instance_id in ids:
        record = await store.get_instance(instance_id)
        assert record.status == InstanceStatus.COMPLETED, (instance_id, record.status, record.error)
        assert record.output == {"n": 7, "before": True, "after": True, "id": instance_id}
        log = await store.get_log(instance_id)
        shown = [(e.reference, str(e.event)) for e in log]
        assert events(log, "/do/1/pause", "started") == 1, shown
        assert events(log, "/do/1/pause", "completed") == 1, shown
        assert events(log, "/", "completed") == 1, shown
        assert events(log, "/do/2/after", "completed") == 1, shown
        assert await store.list_timers(instance_id) == []


async def test_kill_mid_for_loop_does_not_repeat_completed_calls(
    store: Store, store_url: str, processes: Processes, standin: StandIn, tmp_path: Path
) -> None:
    """Two instances looping over 30 recorded POSTs; A dies mid-loop; B takes over after the lease.

    Every item is called, every call of an item carries the same ``Idempotency-Key``,
    and only a call in flight at the kill (at most one per instance) may be repeated.
    """
    count = 2
    base = standin.base_url
    definition = write_definition(tmp_path, "for.yaml", FOR_DEFINITION % {"items": ITEMS, "base": base})
    a = await start_process(processes, store_url, definition, {}, count)

    def recorded() -> list[RecordedRequest]:
        return [r for r in standin.requests if r.path.startswith("/rec/kill/")]

    async def ten_calls() -> bool:
        return len(recorded()) >= 10

    await wait_until(ten_calls, "10 recorded calls", watch=a)
    await processes.kill(a)
    ids = ids_printed(a, count)

    # The kill landed mid-loop: each instance is still running, under A's (now dead) lease.
    tokens: dict[str, int] = {}
    for instance_id in ids:
        record = await store.get_instance(instance_id)
        assert record.status == InstanceStatus.RUNNING and record.lease_owner, (
            f"instance {instance_id} was {record.status} (lease {record.lease_owner}) at the kill: "
            f"the kill did not land mid-loop\n{a.describe()}"
        )
        tokens[instance_id] = record.fencing_token
    before_resume = len(recorded())
    assert before_resume < ITEMS * count, f"A had made every call before the kill\n{a.describe()}"

    summary = await resume_process(processes, store_url)
    assert {i["id"]: i["status"] for i in summary["instances"]} == dict.fromkeys(ids, "completed"), summary

    expected_paths = {f"/rec/kill/{i}/{item}" for i in ids for item in range(ITEMS)}
    stray = [r.path for r in recorded() if r.path not in expected_paths]
    assert not stray, f"calls to unexpected paths: {stray}"

    keys: dict[tuple[str, int], str] = {}
    repeats: dict[tuple[str, int], int] = {}
    for instance_id in ids:
        record = await store.get_instance(instance_id)
        assert record.status == InstanceStatus.COMPLETED, (instance_id, record.status, record.error)
        assert record.output == {"done": True, "id": instance_id}
        assert record.fencing_token > tokens[instance_id], "B never claimed the instance A held"
        for item in range(ITEMS):
            requests = standin.requests_to(f"/rec/kill/{instance_id}/{item}")
            assert requests, f"item {item} of {instance_id} was never called"
            seen = {key_of(r) for r in requests}
            key = seen.pop()
            assert key is not None and not seen, (
                f"item {item} of {instance_id}: Idempotency-Key missing or not stable across attempts: "
                f"{[key_of(r) for r in requests]}"
            )
            assert all(r.body == {"instance": instance_id, "item": item} for r in requests)
            keys[instance_id, item] = key
            if len(requests) > 1:
                repeats[instance_id, item] = len(requests)
        log = await store.get_log(instance_id)
        assert events(log, RECORD_TASK, "completed") == ITEMS, "each call completed exactly once"
        assert events(log, "/", "completed") == 1

    assert len(set(keys.values())) == len(keys), "two different calls shared an Idempotency-Key"
    # Only a call in flight at the kill may be repeated: at most one per instance.
    per_instance = Counter(instance_id for instance_id, _ in repeats)
    assert all(n <= 1 for n in per_instance.values()), f"completed calls were repeated: {repeats}"
    assert sum(n - 1 for n in repeats.values()) <= count, f"completed calls were repeated: {repeats}"


async def test_kill_during_a_long_call_is_taken_over_after_the_lease(
    store: Store, store_url: str, processes: Processes, standin: StandIn, tmp_path: Path
) -> None:
    """A dies while its call to ``/slow`` is in flight; once A's lease expires, B claims the
    instance, makes the call again with the same ``Idempotency-Key``, and completes it once."""
    text = SLOW_DEFINITION % {"base": standin.base_url, "ms": SLOW_MS}
    definition = write_definition(tmp_path, "slow.yaml", text)
    a = await start_process(processes, store_url, definition, {}, 1)

    def slow_calls(instance_id: str) -> list[RecordedRequest]:
        return [r for r in standin.requests_to("/slow") if r.query.get("instance") == [instance_id]]

    async def call_in_flight() -> bool:
        ids = a.lines()
        return bool(ids) and bool(slow_calls(ids[0]))

    await wait_until(call_in_flight, "the slow call to reach the stand-in", watch=a)
    await processes.kill(a)
    (instance_id,) = ids_printed(a, 1)

    at_kill = await store.get_instance(instance_id)
    assert at_kill.status == InstanceStatus.RUNNING and at_kill.lease_owner, (
        f"at the kill the instance was {at_kill.status} (lease {at_kill.lease_owner})\n{a.describe()}"
    )
    assert len(slow_calls(instance_id)) == 1

    summary = await resume_process(processes, store_url)
    assert [(i["id"], i["status"]) for i in summary["instances"]] == [(instance_id, "completed")], summary

    record = await store.get_instance(instance_id)
    assert record.status == InstanceStatus.COMPLETED, (record.status, record.error)
    assert record.output == {"slow": True, "ms": SLOW_MS, "id": instance_id}
    assert record.fencing_token > at_kill.fencing_token, "B never claimed the instance A held"

    calls = slow_calls(instance_id)
    assert len(calls) >= 2, "the interrupted call was not made again"
    seen = {key_of(r) for r in calls}
    assert len(seen) == 1 and None not in seen, f"Idempotency-Key changed between attempts: {seen}"

    log = await store.get_log(instance_id)
    shown = [(e.reference, str(e.event)) for e in log]
    assert events(log, SLOW_TASK, "started") == 1, shown
    assert events(log, SLOW_TASK, "completed") == 1, shown
    assert events(log, "/", "completed") == 1, shown


FORK_SLOW_MS = 2000
FORK_DEFINITION = """\
document: {dsl: '1.0.0', namespace: kill, name: fork-calls, version: '1.0.0'}
do:
  - parallel:
      fork:
        branches:
          - fast:
              call: http
              with:
                method: post
                endpoint:
                  uri: '${ "%(base)s/rec/fork/" + $workflow.id }'
                body:
                  instance: '${ $workflow.id }'
          - slow:
              call: http
              with:
                method: get
                endpoint:
                  uri: '${ "%(base)s/slow?ms=%(ms)d&instance=" + $workflow.id }'
"""
FAST_TASK = "/do/0/parallel/fork/branches/0/fast"
SLOW_BRANCH_TASK = "/do/0/parallel/fork/branches/1/slow"


async def test_kill_while_another_branch_calls_keeps_the_completed_branch(
    store: Store, store_url: str, processes: Processes, standin: StandIn, tmp_path: Path
) -> None:
    """Fork: one branch's call completes while the other's is in flight; A dies; B must not
    repeat the completed call (DESIGN.md: checkpoint after every activity with an outside
    effect; effects of different fork branches run concurrently).

    At 4c5b8ca this fails: ``InstanceRun._drive`` committed only before starting *new*
    outside effects, so the fast branch's result stayed in memory until the slow call
    ended, and a crash in between made the fast call again.
    """
    text = FORK_DEFINITION % {"base": standin.base_url, "ms": FORK_SLOW_MS}
    definition = write_definition(tmp_path, "fork.yaml", text)
    a = await start_process(processes, store_url, definition, {}, 1)

    async def fast_branch_checkpointed() -> bool:
        ids = a.lines()
        return bool(ids) and events(await store.get_log(ids[0]), FAST_TASK, "completed") > 0

    await wait_until(fast_branch_checkpointed, "the fast branch's completion in the database", watch=a)
    await processes.kill(a)
    (instance_id,) = ids_printed(a, 1)

    log = await store.get_log(instance_id)
    assert events(log, SLOW_BRANCH_TASK, "completed") == 0, (
        "the fast branch's completed call was checkpointed only together with the slow branch's "
        f"({FORK_SLOW_MS} ms later), not on its own: {[(e.reference, str(e.event)) for e in log]}"
    )

    summary = await resume_process(processes, store_url)
    assert [(i["id"], i["status"]) for i in summary["instances"]] == [(instance_id, "completed")], summary
    fast = standin.requests_to(f"/rec/fork/{instance_id}")
    assert len(fast) == 1, f"the completed fast call was repeated: {[key_of(r) for r in fast]}"
    record = await store.get_instance(instance_id)
    assert record.output == [
        {"ok": True, "count": 1, "echo": {"instance": instance_id}},
        {"slow": True, "ms": FORK_SLOW_MS},
    ], record.output
    slow = [r for r in standin.requests_to("/slow") if r.query.get("instance") == [instance_id]]
    assert len({key_of(r) for r in slow}) == 1
