"""The mixed workload the scale tests drive through a :class:`~tests.scale.cluster.Cluster`.

One definition, ``scale/mixed``, touches every kind of work a replica does for an
instance, in this order:

1. ``charge``: ``call: http`` POST to the recorder's ``/call/charge`` (an outside effect,
   checkpointed; it carries an ``Idempotency-Key``);
2. ``awaitGo``: ``listen`` for a ``scale.go.v1`` event correlated on the instance's
   ``order`` (a bookmark, resumed by an event the test POSTs to a random replica);
3. ``pause``: ``wait`` 200 ms (a durable timer, fired by whichever replica's timer loop
   sees it due);
4. ``announce``: ``emit`` a ``scale.done.v1`` event (an outbox row, delivered to the
   recorder's webhook when the outbox processor has a sink configured).

The output is ``{order, charged, go, eventId}``: ``eventId`` is the emitted event's id,
which the deliveries at the webhook must carry.

:class:`MixedLoad` starts the instances (client-chosen ids, spread round-robin over the
usable replicas) while a poster sends each instance its event as soon as its
``listen`` bookmark exists (read from the database), and the ``check_*`` methods hold
the guarantees: everything completes, every timer fires once, every call is made once
or repeated only with the same key, every emitted event is delivered with one stable
webhook id and a valid signature.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.scale.cluster import Cluster
from tests.scale.recorder import Recorder

NAMESPACE = "scale"
MIXED = "mixed"
GO_TYPE = "scale.go.v1"
# Not the listened-for type: emitted events are also routed to waiting bookmarks inside
# the engine, and these must reach the sinks only.
DONE_TYPE = "scale.done.v1"

MIXED_DEFINITION = """\
document: {dsl: '1.0.3', namespace: scale, name: mixed, version: '1.0.0'}
do:
  - charge:
      call: http
      with:
        method: post
        endpoint: '%(base)s/call/charge%(query)s'
        body:
          instance: ${ $workflow.id }
          order: ${ .order }
      output:
        as: '${ $input + {charged: .seq} }'
  - awaitGo:
      listen:
        to:
          one:
            with: {type: scale.go.v1}
            correlate:
              order: {from: '${ .data.order }', expect: '${ .order }'}
      output:
        as: '${ $input + {go: .[0].order} }'
  - pause:
      wait: {milliseconds: 200}
  - announce:
      emit:
        event:
          with:
            source: https://flowkeeper.test/scale
            type: scale.done.v1
            data:
              order: ${ .order }
      output:
        as: '${ $input + {eventId: .id} }'
"""
CHARGE, AWAIT_GO, PAUSE, ANNOUNCE, ROOT = (
    "/do/0/charge",
    "/do/1/awaitGo",
    "/do/2/pause",
    "/do/3/announce",
    "/",
)

#: Concurrent requests of the test's client: enough to keep three replicas busy.
CLIENTS = 24


def _clock(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%H:%M:%S.%f}"


def mixed_definition(recorder: Recorder, *, call_query: str = "") -> str:
    """The ``scale/mixed`` document, calling ``recorder`` (``call_query``, e.g. ``?delay_ms=100``)."""
    return MIXED_DEFINITION % {"base": recorder.base_url, "query": call_query}


def go_event(instance_id: str) -> dict[str, Any]:
    """The event that resumes ``instance_id``'s ``listen`` (its order is its id)."""
    return {
        "specversion": "1.0",
        "id": f"go-{instance_id}",
        "source": "/scale/test",
        "type": GO_TYPE,
        "data": {"order": instance_id},
    }


@dataclass
class MixedLoad:
    """``count`` instances of ``scale/mixed`` with ids ``<prefix>-00000`` ..., and their events."""

    cluster: Cluster
    recorder: Recorder
    count: int
    prefix: str = "mixed"
    #: Instances started so far (their start answered 200/201 on some replica).
    started: list[str] = field(default_factory=list)
    #: Events posted, by instance, with the answer's ``matched``.
    posted: dict[str, int] = field(default_factory=dict)
    #: Which replica answered each instance's event (for failure messages).
    answered_by: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [f"{self.prefix}-{i:05d}" for i in range(self.count)]

    async def run(self) -> None:
        """Start every instance and post every event; return when all the events are posted."""
        await asyncio.gather(self.start_all(), self.post_events())

    async def start_all(self) -> None:
        gate = asyncio.Semaphore(CLIENTS)

        async def start(n: int, instance_id: str) -> None:
            async with gate:
                usable = self.cluster.usable()
                # Round-robin over the replicas up now: every API takes its share.
                replica = usable[n % len(usable)] if usable else None
                await self.cluster.start_instance(
                    NAMESPACE, MIXED, {"order": instance_id}, instance_id, replica=replica
                )
                self.started.append(instance_id)

        await asyncio.gather(*(start(n, i) for n, i in enumerate(self.ids)))

    async def post_events(self) -> None:
        """Post each instance's event once its ``listen`` bookmark exists, to a random replica.

        The bookmarks are read from the database: a cheap query, where listing every
        suspended instance over the API would cost the replicas more than the load.
        """
        gate = asyncio.Semaphore(CLIENTS)
        wanted = set(self.ids)

        async def post(instance_id: str) -> None:
            replica = self.cluster.pick()
            async with gate:
                answer = await self.cluster.post_event(go_event(instance_id), replica=replica)
            self.posted[instance_id] = int(answer.get("matched", 0))
            self.answered_by[instance_id] = replica.name  # unless it failed over (it says so in its log)

        async def waiting() -> list[str]:
            rows = await self.cluster.sql(
                "SELECT instance_id FROM workflow_bookmark WHERE kind = 'event' AND NOT is_consumed"
            )
            return [r[0] for r in rows if r[0] in wanted and r[0] not in self.posted]

        async def all_posted() -> bool:
            fresh = await waiting()
            for instance_id in fresh:
                self.posted.setdefault(instance_id, -1)  # claimed by this pass
            await asyncio.gather(*(post(i) for i in fresh))
            return len(self.posted) == self.count

        await self.cluster.wait_until(
            all_posted, "every instance to reach its listen", poll=0.05, progress=self.progress
        )

    async def progress(self) -> str:
        """Counts by status, for failure messages."""
        rows = await self.cluster.sql(
            "SELECT status, current_activity_id, count(*) FROM workflow_instance GROUP BY 1, 2 ORDER BY 1, 2"
        )
        counts = ", ".join(f"{r[0]} at {r[1]}: {r[2]}" for r in rows)
        return f"(started {len(self.started)}/{self.count}, events posted {len(self.posted)}; {counts})"

    async def until_all_terminal(self) -> None:
        """Wait until no instance of this load is pending, running or suspended."""

        async def done() -> bool:
            rows = await self.cluster.sql(
                "SELECT count(*) FROM workflow_instance WHERE id LIKE $1 "
                "AND status IN ('completed', 'failed', 'cancelled')",
                f"{self.prefix}-%",
            )
            return int(rows[0][0]) == self.count

        await self.cluster.wait_until(done, "every instance to end", poll=0.2, progress=self.stuck)

    async def stuck(self) -> str:
        """What the unfinished instances wait for, for failure messages."""
        rows = await self.cluster.sql(
            "SELECT i.id, i.status, i.current_activity_id, i.lease_owner, "
            "(SELECT count(*) FROM workflow_bookmark b WHERE b.instance_id = i.id AND NOT b.is_consumed), "
            "(SELECT count(*) FROM workflow_timer t WHERE t.instance_id = i.id), "
            "(SELECT max(b.created_on) FROM workflow_bookmark b WHERE b.instance_id = i.id), "
            "(SELECT e.received_on FROM workflow_event e WHERE e.id = 'go-' || i.id) "
            "FROM workflow_instance i "
            "WHERE i.id LIKE $1 AND i.status NOT IN ('completed', 'failed', 'cancelled') "
            "ORDER BY i.id LIMIT 20",
            f"{self.prefix}-%",
        )
        shown = "\n".join(
            f"  {r[0]} {r[1]} at {r[2]} lease {r[3]}, open bookmarks {r[4]}, timers {r[5]}; "
            f"last bookmark created {_clock(r[6])}; its event "
            + (
                f"posted to {self.answered_by.get(r[0])} (matched {self.posted.get(r[0])}), "
                f"received {_clock(r[7])}"
                if r[0] in self.answered_by and r[7] is not None
                else f"posted: {r[0] in self.posted}"
            )
            for r in rows
        )
        failed_posts = [
            f"  {label}: {failure[:300]}"
            for label, failure in self.cluster.retried
            if any(label == f"event go-{r[0]}" for r in rows)
        ]
        return (
            f"{await self.progress()}\nfirst unfinished:\n{shown}\n"
            f"failed attempts at posting their events (then retried):\n"
            + "\n".join(failed_posts or ["  none"])
        )

    # -- the guarantees -------------------------------------------------------------------------

    async def check_completed(self) -> dict[str, dict[str, Any]]:
        """Every instance completed with the expected output; returns them by id."""
        found = {i["id"]: i for i in await self.cluster.instances() if i["id"].startswith(f"{self.prefix}-")}
        assert sorted(found) == self.ids, f"missing instances: {sorted(set(self.ids) - set(found))[:20]}"
        bad = {i: (v["status"], v["error"]) for i, v in found.items() if v["status"] != "completed"}
        assert not bad, f"{len(bad)} instances did not complete, e.g. {list(bad.items())[:5]}"
        for instance_id, instance in found.items():
            output = instance["output"]
            assert output["order"] == output["go"] == instance_id, (instance_id, output)
            assert isinstance(output["charged"], int), (instance_id, output)
            assert isinstance(output["eventId"], str) and output["eventId"], (instance_id, output)
        return found

    async def check_logs(self) -> None:
        """Each instance's execution log: the timer fired once (``pause`` started and completed
        once), the call, the listen and the emit completed once, the instance completed once."""
        gate = asyncio.Semaphore(CLIENTS)
        problems: list[str] = []

        async def check(instance_id: str) -> None:
            async with gate:
                log = await self.cluster.log(instance_id)
            seen = Counter((e["reference"], e["event"]) for e in log)
            wanted = {
                (PAUSE, "started"): 1,
                (PAUSE, "completed"): 1,
                (CHARGE, "completed"): 1,
                (AWAIT_GO, "completed"): 1,
                (ANNOUNCE, "completed"): 1,
                (ROOT, "completed"): 1,
            }
            wrong = {k: seen[k] for k, n in wanted.items() if seen[k] != n}
            if wrong:
                problems.append(f"{instance_id}: {wrong} in {[(e['reference'], e['event']) for e in log]}")

        await asyncio.gather(*(check(i) for i in self.ids))
        assert not problems, f"{len(problems)} execution logs are wrong, e.g.\n" + "\n".join(problems[:5])

    async def check_calls(self) -> Counter[str]:
        """Every instance's call reached the recorder; repeats carry the same Idempotency-Key.

        Returns how many times each instance's call was received (repeats are allowed:
        calls are at least once).
        """
        keys: dict[str, set[str | None]] = defaultdict(set)
        received: Counter[str] = Counter()
        for record in await self.recorder.records("/call/charge"):
            instance_id = json.loads(record["body"])["instance"]
            keys[instance_id].add(record["headers"].get("idempotency-key"))
            received[instance_id] += 1
        missing = [i for i in self.ids if i not in received]
        assert not missing, f"{len(missing)} instances' calls never reached the recorder: {missing[:10]}"
        differing = {i: k for i, k in keys.items() if len(k) != 1}
        assert not differing, f"calls repeated with different Idempotency-Keys: {list(differing.items())[:5]}"
        for instance_id, (key,) in keys.items():
            assert key is not None and key.startswith(f"{instance_id}:"), (instance_id, key)
        return received


async def check_deliveries(
    recorder: Recorder, expected: dict[str, str], sink: str, secret: str
) -> dict[str, list[dict[str, Any]]]:
    """Every event of ``expected`` (event id -> the emitting instance's id, which is its
    ``data.order``) reached ``/outbox/<sink>`` at least once; all deliveries of one event
    carry the same ``webhook-id`` and a valid signature. Returns the deliveries by event id.
    """
    webhook_ids: dict[str, set[str | None]] = defaultdict(set)
    delivered: dict[str, list[dict[str, Any]]] = defaultdict(list)
    bad_signatures: list[str] = []
    for record in await recorder.records(f"/outbox/{sink}"):
        event = json.loads(record["body"])
        webhook_ids[event["id"]].add(record["headers"].get("webhook-id"))
        delivered[event["id"]].append(record)
        if not signature_valid(record, secret):
            bad_signatures.append(f"{event['id']}: {record['headers']}")
        if event["id"] in expected:
            assert event["type"] == DONE_TYPE and event["data"] == {"order": expected[event["id"]]}, event
    missing = [e for e in expected if e not in delivered]
    assert not missing, (
        f"{len(missing)} of {len(expected)} emitted events never reached {sink}: {missing[:5]}"
    )
    unstable = {e: w for e, w in webhook_ids.items() if len(w) != 1 or None in w}
    assert not unstable, f"deliveries of one event with differing webhook-ids: {list(unstable.items())[:5]}"
    assert not bad_signatures, f"{len(bad_signatures)} bad webhook signatures, e.g. {bad_signatures[:3]}"
    return delivered


def signature_valid(record: dict[str, Any], secret: str) -> bool:
    """``webhook-signature`` holds ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``
    (one of its space-separated entries, as Standard Webhooks allows several)."""
    headers = record["headers"]
    webhook_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if webhook_id is None or timestamp is None:
        return False
    message = f"{webhook_id}.{timestamp}.{record['body']}".encode()
    expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(entry, f"v1,{expected}") for entry in offered)


def emitted_events(instances: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Event id -> instance id, from completed instances whose output has ``eventId``."""
    return {i["output"]["eventId"]: instance_id for instance_id, i in instances.items()}


async def until_delivered(cluster: Cluster, recorder: Recorder, events: dict[str, str], sink: str) -> None:
    """Wait until every event of ``events`` reached ``/outbox/<sink>`` at least once."""
    path = f"/outbox/{sink}"

    async def delivered() -> bool:
        if await recorder.count(path) < len(events):  # cheap, before reading every record
            return False
        seen = {json.loads(r["body"])["id"] for r in await recorder.records(path)}
        return seen >= events.keys()

    async def shortfall() -> str:
        seen = {json.loads(r["body"])["id"] for r in await recorder.records(path)}
        outbox = await cluster.sql("SELECT status, count(*) FROM workflow_outbox GROUP BY 1")
        return f"({len(events.keys() - seen)} of {len(events)} not delivered; outbox rows {outbox})"

    await cluster.wait_until(delivered, f"every emitted event to reach {path}", poll=0.25, progress=shortfall)
