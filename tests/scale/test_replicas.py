"""Replicas on one PostgreSQL never lose, duplicate or stall work.

DESIGN.md, "Execution model": any replica can resume any instance; a worker holds an
instance under a lease with a fencing token, and a stale writer is rejected, never
merged; a crashed replica's leases expire and the others pick its instances up;
external calls are made at least once, each with a stable ``Idempotency-Key``; outbox
deliveries are at least once, each with a stable event id.

Every test runs real ``flowkeeper serve`` processes (``tests/scale/cluster.py``) on one
fresh database, with a 2 s lease, and a loopback recorder (``tests/scale/recorder.py``)
that the workflows call and the outbox delivers to. Faults are real: SIGKILL, SIGSTOP
and SIGCONT of a replica, ``pg_terminate_backend`` of every session. Synchronisation
is by polling a condition (database, recorder, replica log) under a guard deadline;
no assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.scale.cluster import Cluster
from tests.scale.conftest import SINK_SECRET, MakeCluster, webhook_sink
from tests.scale.recorder import Recorder
from tests.scale.workload import (
    ROOT,
    MixedLoad,
    check_deliveries,
    emitted_events,
    mixed_definition,
    until_delivered,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_three_replicas_complete_a_thousand_mixed_instances(
    make_cluster: MakeCluster, recorder: Recorder
) -> None:
    """1,000 instances (call, listen, wait, emit) over three APIs: all complete, each timer
    fires once, each call is made once or repeated with its key, each emitted event is
    delivered with one stable webhook id."""
    cluster = await make_cluster(3, sinks=[webhook_sink(recorder, "recorder")])
    await cluster.deploy(mixed_definition(recorder))
    load = MixedLoad(cluster, recorder, 1000)

    await load.run()
    await load.until_all_terminal()

    instances = await load.check_completed()
    await load.check_logs()
    await load.check_calls()
    # Each event was posted once its listen's bookmark was committed: it resumed that
    # bookmark (1), or the run that created it had already served it the event, kept
    # since it arrived (0). Either way once: the logs above show one listen completion.
    assert set(load.posted.values()) <= {0, 1}, Counter(load.posted.values())

    if cluster.sinks_refused:
        pytest.skip(
            f"everything but the outbox deliveries checked and passed; {cluster.sinks_refused} "
            "(the outbox processor has not landed), so emitted events are not delivered to the recorder"
        )
    events = emitted_events(instances)
    await until_delivered(cluster, recorder, events, "recorder")
    await check_deliveries(recorder, events, "recorder", SINK_SECRET)


async def test_sigkill_of_a_replica_mid_load_loses_nothing(
    make_cluster: MakeCluster, recorder: Recorder
) -> None:
    """SIGKILL a replica while it holds instances mid-call: the other two finish them once
    its leases expire, and no call is repeated under a different key."""
    cluster = await make_cluster(3)
    # A call that takes a little while: the victim is sure to die holding leases mid-call.
    await cluster.deploy(mixed_definition(recorder, call_query="?delay_ms=100"))
    load = MixedLoad(cluster, recorder, 300, prefix="kill")
    victim = cluster.replicas[0]
    running = asyncio.create_task(load.run())

    held: list[str] = []

    async def victim_holds_leases() -> bool:
        rows = await cluster.sql(
            "SELECT id FROM workflow_instance WHERE lease_owner = $1 AND lease_expires_at > now() "
            "AND status NOT IN ('completed', 'failed', 'cancelled')",
            victim.name,
        )
        held[:] = [r[0] for r in rows]
        return len(held) >= 5

    await cluster.wait_until(victim_holds_leases, f"{victim.name} to hold leases", poll=0.02)
    cluster.kill(victim)

    await running  # the clients retry on the survivors what the victim could not answer
    await load.until_all_terminal()
    await load.check_completed()
    await load.check_logs()
    received = await load.check_calls()
    # The victim's instances are among the completed ones (checked above), finished by the
    # others; the calls it was making are the ones that may have been made twice.
    repeated = {i: received[i] for i in held if received[i] > 1}
    print(f"{victim.name} held {len(held)} leases at the kill; calls made again after it: {repeated}")


SLOW_MS = 1500
SLOW_DEFINITION = """\
document: {dsl: '1.0.3', namespace: scale, name: slow-call, version: '1.0.0'}
do:
  - slowCall:
      call: http
      with:
        method: post
        endpoint:
          uri: '${ "%(base)s/call/slow/" + $workflow.id + "?delay_first_ms=%(ms)d" }'
        body:
          instance: ${ $workflow.id }
  - finish:
      set:
        n: ${ .n }
        id: ${ $workflow.id }
"""
SLOW_CALL = "/do/0/slowCall"


async def test_frozen_replica_late_writes_are_rejected(make_cluster: MakeCluster, recorder: Recorder) -> None:
    """SIGSTOP a replica mid-call past its lease: the others take its instances over and
    complete them; after SIGCONT its late writes are rejected (the state stays the one
    the other replica wrote, nothing completes twice)."""
    cluster = await make_cluster(3)
    await cluster.deploy(SLOW_DEFINITION % {"base": recorder.base_url, "ms": SLOW_MS})
    frozen = cluster.replicas[0]
    ids = [f"slow-{i}" for i in range(5)]
    # Started on the replica to freeze, which runs them at once in its own process; the
    # first request at each path is answered only after SLOW_MS, the next ones at once.
    for instance_id in ids:
        await cluster.start_instance("scale", "slow-call", {}, instance_id, replica=frozen)

    async def every_first_call_made() -> bool:
        return await recorder.count("/call/slow/") >= len(ids)

    await cluster.wait_until(
        every_first_call_made, f"{frozen.name} to be calling for every instance", poll=0.01
    )
    cluster.freeze(frozen)
    # What it holds now, frozen mid-call (a survivor may have taken some already, should
    # this machine have starved the replica's lease renewals).
    rows = await cluster.sql(
        "SELECT id FROM workflow_instance WHERE id = ANY($1) AND lease_owner = $2 AND status = 'running'",
        ids,
        frozen.name,
    )
    held = sorted(r[0] for r in rows)
    assert held, f"{frozen.name} held no instance when frozen: nothing to test\n{cluster.describe()}"

    async def all_completed() -> bool:
        rows = await cluster.sql(
            "SELECT count(*) FROM workflow_instance WHERE id = ANY($1) AND status = 'completed'", ids
        )
        return int(rows[0][0]) == len(ids)

    await cluster.wait_until(all_completed, "the other replicas to take over and complete every instance")
    before = {i: await cluster.instance(i) for i in ids}

    cluster.thaw(frozen)

    async def late_writes_refused() -> bool:
        # The thawed replica gets its (stale) call answers and tries to commit them.
        lines = frozen.log().lower().splitlines()
        return all(any(i in line and "conflict" in line for line in lines) for i in held)

    await cluster.wait_until(late_writes_refused, f"{frozen.name} to have its late writes refused")

    calls = await recorder.records("/call/slow/")
    for instance_id in ids:
        after = await cluster.instance(instance_id)
        assert after == before[instance_id], (
            f"{instance_id} changed after the thaw: {before[instance_id]} -> {after}"
        )
        # The output holds the answer to a takeover's call (n >= 2), never the one the frozen
        # replica got (n = 1, the first request at the path). Under CPU pressure the
        # survivors may also take the instance from each other: more calls, same key.
        mine = [r for r in calls if r["path"] == f"/call/slow/{instance_id}"]
        assert len(mine) >= 2 and after["output"]["n"] >= 2, (len(mine), after["output"])
        assert after["output"] == {"n": after["output"]["n"], "id": instance_id}, after["output"]
        keys = {r["headers"].get("idempotency-key") for r in mine}
        assert len(keys) == 1 and None not in keys, keys
        log = Counter((e["reference"], e["event"]) for e in await cluster.log(instance_id))
        assert log[(ROOT, "completed")] == 1 and log[(SLOW_CALL, "completed")] == 1, log

    # And the thawed replica works on: it runs a new instance to the end.
    await cluster.start_instance("scale", "slow-call", {}, "slow-after-thaw", replica=frozen)

    async def new_one_completed() -> bool:
        return bool((await cluster.instance("slow-after-thaw"))["status"] == "completed")

    await cluster.wait_until(new_one_completed, f"{frozen.name} to complete a new instance after the thaw")


async def test_terminated_database_sessions_are_reconnected(
    make_cluster: MakeCluster, recorder: Recorder
) -> None:
    """``pg_terminate_backend`` on every replica session, six times during the load: the
    services reconnect by themselves and all the work completes, once."""
    cluster = await make_cluster(3)
    await cluster.deploy(mixed_definition(recorder))
    load = MixedLoad(cluster, recorder, 300, prefix="term")
    running = asyncio.create_task(load.run())

    async def calls() -> int:
        return await recorder.count("/call/charge")

    async def completed() -> int:
        rows = await cluster.sql("SELECT count(*) FROM workflow_instance WHERE status = 'completed'")
        return int(rows[0][0])

    # Spread over the phases: while instances start and call, then (more often: events come
    # in, timers fire, outbox rows go out) while they resume and end.
    rounds = (
        (calls, 0.2),
        (calls, 0.6),
        (completed, 0.1),
        (completed, 0.3),
        (completed, 0.5),
        (completed, 0.7),
    )

    async def sessions() -> int:
        rows = await cluster.sql(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(rows[0][0])

    ended: list[int] = []
    for probe, share in rounds:
        target = int(load.count * share)
        await cluster.wait_until(
            at_least(probe, target), f"{probe.__name__} >= {target}", poll=0.02, progress=load.stuck
        )
        # Two rounds may come due together: end sessions the replicas opened again since.
        await cluster.wait_until(at_least(sessions, 1), "replica sessions", poll=0.02)
        ended.append(await cluster.terminate_backends())

    await running
    await load.until_all_terminal()
    await load.check_completed()
    await load.check_logs()
    await load.check_calls()
    assert all(n > 0 for n in ended), f"a termination round found no session to end: {ended}"
    for replica in cluster.replicas:  # and every replica is still up and ready
        response = await cluster.http.get(f"{replica.base_url}/health/ready")
        assert replica.alive and response.status_code == 200, replica.describe()


EMIT_DEFINITION = """\
document: {dsl: '1.0.3', namespace: scale, name: emit-only, version: '1.0.0'}
do:
  - announce:
      emit:
        event:
          with:
            source: https://flowkeeper.test/scale
            type: scale.done.v1
            data:
              order: ${ $workflow.id }
      output:
        as: '${ {eventId: .id} }'
"""
ATTEMPTS = 3


async def test_broken_sink_dead_letters_without_holding_up_the_healthy_one(
    make_cluster: MakeCluster, recorder: Recorder
) -> None:
    """A sink that always answers 500 next to a healthy one: the broken sink's deliveries
    dead-letter after the configured attempts; the healthy sink gets every event, each
    before the broken sink's last attempt at it (it did not wait for those retries)."""
    # The broken sink is listed first: a processor that delivered to sinks one after the
    # other, retries included, would make the healthy one wait.
    sinks = [webhook_sink(recorder, "broken", "/fail/broken"), webhook_sink(recorder, "recorder")]
    outbox = {"retry_delay_base": "50ms", "max_retry_attempts": ATTEMPTS, "max_retry_delay": "500ms"}
    cluster = await make_cluster(2, sinks=sinks, outbox=outbox)  # two replicas are enough here
    if cluster.sinks_refused:
        pytest.skip(f"{cluster.sinks_refused}: the outbox processor has not landed")
    probe = await cluster.request("GET", "/api/v1/outbox", params={"status": "dead"})
    if probe.status_code == 404:
        pytest.skip("GET /api/v1/outbox answers 404: the outbox route has not landed")
    assert probe.status_code == 200, probe.text

    await cluster.deploy(EMIT_DEFINITION)
    ids = [f"emit-{i:03d}" for i in range(100)]
    await asyncio.gather(*(cluster.start_instance("scale", "emit-only", {}, i) for i in ids))

    async def all_completed() -> bool:
        rows = await cluster.sql("SELECT count(*) FROM workflow_instance WHERE status = 'completed'")
        return int(rows[0][0]) == len(ids)

    await cluster.wait_until(all_completed, "every emitting instance to complete")
    events = emitted_events({i: await cluster.instance(i) for i in ids})

    await until_delivered(cluster, recorder, events, "recorder")
    healthy = await check_deliveries(recorder, events, "recorder", SINK_SECRET)

    dead: dict[str, dict[str, Any]] = {}

    async def all_dead() -> bool:
        dead.clear()
        dead.update((item["id"], item) for item in await dead_items(cluster) if item["id"] in events)
        return dead.keys() == events.keys()

    await cluster.wait_until(all_dead, "every event to dead-letter at the broken sink")

    attempts: dict[str, list[float]] = {}
    for record in await recorder.records("/fail/broken"):
        attempts.setdefault(json.loads(record["body"])["id"], []).append(record["at"])
    for event_id in events:
        item, made = dead[event_id], attempts.get(event_id, [])
        # Dead after the configured number of attempts, the healthy sink's delivery kept
        # (a retry skips the sinks that have the event), the broken one's error kept.
        assert item["attempts"] == ATTEMPTS and item["deliveredTo"] == ["recorder"], item
        assert "broken" in (item["lastError"] or ""), item
        # Every attempt reached the broken sink (more only if a claim ran out: at least once).
        assert len(made) >= ATTEMPTS, (event_id, len(made))
        # One clock (the recorder's): the healthy delivery came before the broken sink's
        # last attempt, so it did not wait for those retries.
        first_healthy = min(r["at"] for r in healthy[event_id])
        assert first_healthy < max(made), (event_id, first_healthy, made)


def at_least(probe: Callable[[], Awaitable[int]], n: int) -> Callable[[], Awaitable[bool]]:
    """A condition: ``await probe()`` is at least ``n``."""

    async def reached() -> bool:
        return await probe() >= n

    return reached


async def dead_items(cluster: Cluster) -> list[dict[str, Any]]:
    """Every item of ``GET /api/v1/outbox?status=dead``, following the cursor."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"status": "dead", "limit": 1000}
    while True:
        page = await cluster.json("GET", "/api/v1/outbox", params=params)
        items.extend(page["items"])
        if not page.get("nextCursor"):
            return items
        params["cursor"] = page["nextCursor"]
