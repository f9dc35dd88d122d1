"""The outbox processor against real loopback webhooks, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import timedelta
from typing import Any, cast

from flowkeeper.config import OutboxProcessorSettings, WebhookSinkSettings
from flowkeeper.errors import StoreUnavailable
from flowkeeper.records import InstanceStatus, OutboxStatus
from flowkeeper.runtime import Engine, run_to_end
from flowkeeper.services.outbox import OutboxProcessor
from flowkeeper.services.sinks import Sink, WebhookSink
from flowkeeper.store import Store
from tests.conftest import StoreFactory
from tests.integration.runtime.conftest import ADOPTED_EMITTER, deploy
from tests.integration.services.outbox_support import (
    GUARD,
    Receiver,
    ReceiverFactory,
    emitted,
    eventually,
    running,
    signature_is_valid,
)
from tests.integration.store.conftest import Make

MS = timedelta(milliseconds=1)
SECRET = "s3cret-for-tests"


def settings(**kw: Any) -> OutboxProcessorSettings:
    """Fast settings for tests: short retry delays, short polling."""
    fields: dict[str, Any] = {
        "batch_size": 10,
        "processing_interval": timedelta(seconds=5),
        "retry_delay_base": 20 * MS,
        "max_retry_delay": timedelta(seconds=1),
    }
    return OutboxProcessorSettings(**(fields | kw))


def webhook(name: str, receiver: Receiver, **kw: Any) -> WebhookSink:
    return WebhookSink(WebhookSinkSettings(name=name, type="webhook", url=receiver.url, **kw))


def processor(store: Store, *sinks: Sink, **kw: Any) -> OutboxProcessor:
    owner = kw.pop("owner", None)
    return OutboxProcessor(store, settings(**kw), sinks=list(sinks), owner=owner)


async def statuses(store: Store) -> Counter[OutboxStatus]:
    return Counter(r.status for r in await store.list_outbox(limit=1000))


async def all_in(store: Store, status: OutboxStatus, count: int) -> bool:
    return (await statuses(store))[status] == count


# -- delivery -------------------------------------------------------------------------------


async def test_an_emitted_event_reaches_a_signed_webhook_with_its_stable_id(
    engine: Engine, store: Store, receivers: ReceiverFactory
) -> None:
    receiver = await receivers()
    await deploy(engine, ADOPTED_EMITTER, name="emitter")
    started = await engine.start("tests", "emitter", None, {"pet": "Rex"})
    finished = await run_to_end(engine, started.id, limit=GUARD, stop_when_idle=True)
    assert finished.status is InstanceStatus.COMPLETED
    [row] = await store.list_outbox()

    async with running(processor(store, webhook("audit", receiver, secret=SECRET))) as p:
        [request] = await receiver.wait_for(lambda r: len(r) == 1, "the delivery")
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 1), "the row to be delivered")

    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.headers["webhook-id"] == row.event["id"] == row.id
    assert signature_is_valid(request, SECRET)
    assert request.event == row.event
    assert request.event["data"] == {"pet": "Rex"}
    delivered = await store.get_outbox(row.id)
    assert delivered.delivered_to == ("audit",)
    assert delivered.attempts == 1
    assert p.figures().deliveries == {("audit", "delivered"): 1}
    assert p.figures().delivered == 1


async def test_every_row_is_delivered_once_batch_after_batch(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    receiver = await receivers()
    records = await emitted(store, make, 35)
    async with running(processor(store, webhook("a", receiver))) as p:
        await receiver.wait_for(lambda r: len(r) >= 35, "35 deliveries")
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 35), "every row delivered")
        p.wake()  # a wake with nothing due claims nothing
    assert sorted(receiver.ids()) == sorted(r.event["id"] for r in records)
    assert "webhook-signature" not in receiver.requests[0].headers  # no secret: unsigned


async def test_event_types_route_rows_to_the_sinks_that_want_them(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    orders, everything = await receivers(), await receivers()
    wanted = await emitted(store, make, 2, type="com.example.order.placed")
    other = await emitted(store, make, 3, type="com.example.pet.adopted")
    sinks = (webhook("orders", orders, event_types=["com.example.order.*"]), webhook("all", everything))
    async with running(processor(store, *sinks)):
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 5), "every row delivered")
    assert sorted(orders.ids()) == sorted(r.event["id"] for r in wanted)
    assert sorted(everything.ids()) == sorted(r.event["id"] for r in wanted + other)
    assert (await store.get_outbox(other[0].id)).delivered_to == ("all",)
    assert (await store.get_outbox(wanted[0].id)).delivered_to == ("orders", "all")


async def test_without_sinks_rows_are_marked_delivered(store: Store, make: Make) -> None:
    await emitted(store, make, 3)
    p = processor(store)
    async with running(p):
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 3), "every row delivered")
    health = p.health()
    assert health.status == "Healthy"
    assert "no external sink configured" in (health.description or "")


# -- failures, retries, dead letters ---------------------------------------------------------


async def test_a_failing_sink_is_retried_with_growing_delays_then_dead_while_the_other_gets_all(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    healthy, failing = await receivers(), await receivers(status=500)
    records = await emitted(store, make, 4)
    p = processor(
        store,
        webhook("healthy", healthy),
        webhook("failing", failing, secret=SECRET),
        max_retry_attempts=3,
        retry_delay_base=30 * MS,
        retry_delay_multiplier=3.0,
    )
    async with running(p):
        await failing.wait_for(lambda r: len(r) == 4 * 3, "three attempts per event")
        await eventually(lambda: all_in(store, OutboxStatus.DEAD, 4), "every row dead")
        assert p.health().status == "Degraded"

    # The healthy sink had every event once, at the first pass: retries skip it.
    assert sorted(healthy.ids()) == sorted(r.event["id"] for r in records)
    attempts = Counter(failing.ids())
    assert attempts == Counter({r.event["id"]: 3 for r in records})
    for record in records:
        tries = [r for r in failing.requests if r.event["id"] == record.event["id"]]
        assert all(r.headers["webhook-id"] == record.event["id"] for r in tries)
        assert all(signature_is_valid(r, SECRET) for r in tries)
        # A retry never comes before its delay (30 ms, then 90 ms): by construction, not timing.
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
        assert [p.retry_delay(n).total_seconds() for n in (1, 2)] == [0.03, 0.09]
        assert all(gap >= p.retry_delay(n).total_seconds() - 0.001 for n, gap in enumerate(gaps, 1))
        dead = await store.get_outbox(record.id)
        assert dead.status is OutboxStatus.DEAD
        assert dead.attempts == 3
        assert dead.delivered_to == ("healthy",)
        assert dead.last_error is not None
        assert dead.last_error.startswith(f"failing: {failing.url} answered HTTP 500")
        assert SECRET not in dead.last_error
    figures = p.figures()
    assert figures.deliveries[("healthy", "delivered")] == 4
    assert figures.deliveries[("failing", "failed")] == 12
    assert figures.dead_letters == 4
    assert figures.retried == 8


async def test_a_requeued_dead_event_is_delivered_again_with_the_same_id(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    healthy, flaky = await receivers(), await receivers(status=503)
    [record] = await emitted(store, make, 1)
    p = processor(store, webhook("healthy", healthy), webhook("flaky", flaky), max_retry_attempts=1)
    async with running(p):
        await eventually(lambda: all_in(store, OutboxStatus.DEAD, 1), "the row to die")
        assert len(flaky.requests) == 1

        flaky.status = 204  # the receiver is fixed; an operator re-queues
        requeued = await store.requeue_outbox(record.id)
        assert requeued.status is OutboxStatus.PENDING
        p.wake()
        await flaky.wait_for(lambda r: len(r) == 2, "the second delivery")
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 1), "the row to be delivered")

    assert flaky.ids() == [record.event["id"]] * 2
    assert [r.headers.get("content-type") for r in flaky.requests] == ["application/cloudevents+json"] * 2
    assert healthy.ids() == [record.event["id"]]  # not again: it had it
    assert (await store.get_outbox(record.id)).delivered_to == ("healthy", "flaky")


async def test_a_slow_sink_does_not_hold_up_the_other_sink_or_other_rows(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    fast, slow = await receivers(), await receivers()
    slow.gate = asyncio.Event()  # the slow sink answers nothing until released
    records = await emitted(store, make, 6)
    async with running(processor(store, webhook("fast", fast), webhook("slow", slow))):
        # Every event reaches both sinks while the slow one still sits on all of them.
        await fast.wait_for(lambda r: len(r) == 6, "the fast sink's deliveries")
        await slow.wait_for(lambda r: len(r) == 6, "the slow sink's requests, all in parallel")
        assert (await statuses(store))[OutboxStatus.PROCESSING] == 6
        slow.gate.set()
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 6), "every row delivered")
    assert sorted(fast.ids()) == sorted(slow.ids()) == sorted(r.event["id"] for r in records)


async def test_a_timed_out_delivery_is_a_failure_and_retried(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    stuck = await receivers()
    stuck.gate = asyncio.Event()
    [record] = await emitted(store, make, 1)
    p = processor(store, webhook("stuck", stuck, timeout=50 * MS), max_retry_attempts=2)
    async with running(p):
        await stuck.wait_for(lambda r: len(r) == 2, "a retry after the timeout")
        await eventually(lambda: all_in(store, OutboxStatus.DEAD, 1), "the row to die")
    dead = await store.get_outbox(record.id)
    assert dead.last_error == f"stuck: {stuck.url}: no answer within 0.05s"


async def test_an_unreachable_webhook_gives_a_readable_error(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    url = "http://user:pa55word@127.0.0.1:9/hook"  # the discard port: nothing listens
    sink = WebhookSink(WebhookSinkSettings(name="gone", type="webhook", url=url, secret=SECRET))
    p = processor(store, sink, max_retry_attempts=1)
    assert await p.run_once() == 1
    await p.aclose()
    dead = await store.get_outbox(record.id)
    assert dead.status is OutboxStatus.DEAD
    assert dead.last_error is not None
    assert dead.last_error.startswith("gone: http://user:***@127.0.0.1:9/hook: cannot connect")
    assert "pa55word" not in dead.last_error
    assert SECRET not in dead.last_error


# -- crashes and concurrency -----------------------------------------------------------------


async def test_rows_of_a_crashed_processor_are_reclaimed_after_their_claim_runs_out(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    receiver = await receivers()
    records = await emitted(store, make, 5)
    # A processor claims and dies before settling anything.
    abandoned = await store.claim_outbox("crashed-processor", 10, 300 * MS)
    assert len(abandoned) == 5
    p = processor(store, webhook("a", receiver), processing_interval=50 * MS, owner="survivor")
    async with running(p):
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 5), "every row delivered")
    assert sorted(receiver.ids()) == sorted(r.event["id"] for r in records)
    for record in records:
        assert (await store.get_outbox(record.id)).claimed_by == "survivor"


async def test_two_processors_on_one_database_deliver_every_event(
    store: Store, store_factory: StoreFactory, make: Make, receivers: ReceiverFactory
) -> None:
    receiver = await receivers()
    records = await emitted(store, make, 60)
    other_store = await store_factory()
    first = processor(store, webhook("a", receiver), batch_size=7, owner="p1")
    second = processor(other_store, webhook("a", receiver), batch_size=7, owner="p2")
    async with running(first), running(second):
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 60), "every row delivered")
    expected = {r.event["id"] for r in records}
    assert set(receiver.ids()) == expected
    # Duplicates are allowed (at least once), but only ever with the event's own id.
    assert all(r.headers["content-type"] == "application/cloudevents+json" for r in receiver.requests)
    owners = Counter(r.claimed_by for r in await store.list_outbox(limit=100))
    assert set(owners) <= {"p1", "p2"}
    assert sum(owners.values()) == 60


async def test_health_reports_the_backlog_and_dead_letters(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    receiver = await receivers(status=500)
    p = processor(store, webhook("a", receiver), max_retry_attempts=1)
    assert p.health().status == "Healthy"
    assert "not started" in (p.health().description or "")
    await emitted(store, make, 2)
    async with running(p):
        await eventually(lambda: all_in(store, OutboxStatus.DEAD, 2), "both rows dead")

        async def reported() -> bool:  # the count is refreshed while idle, about every second
            return p.figures().dead == 2

        await eventually(reported, "the dead letters to be counted")
    health = p.health()
    assert health.status == "Degraded"
    assert "2 dead letter(s)" in (health.description or "")
    assert "0 event(s) pending" in (health.description or "")


class FlakyStore:
    """The test's store, whose claims fail until ``recover`` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failed = asyncio.Event()
        self.recover = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim_outbox(self, *args: Any, **kwargs: Any) -> Any:
        if not self.recover.is_set():
            self.failed.set()
            raise StoreUnavailable("the database is unreachable (test)")
        return await self.store.claim_outbox(*args, **kwargs)


async def test_a_database_failure_degrades_health_until_the_next_good_pass(
    store: Store, make: Make, receivers: ReceiverFactory
) -> None:
    receiver = await receivers()
    await emitted(store, make, 2)
    flaky = FlakyStore(store)
    p = OutboxProcessor(cast(Store, flaky), settings(), sinks=[webhook("a", receiver)])
    async with running(p):
        await asyncio.wait_for(flaky.failed.wait(), GUARD)
        health = p.health()
        assert health.status == "Degraded"
        assert (
            health.description
            == "last pass failed: claim: StoreUnavailable: the database is unreachable (test)"
        )
        flaky.recover.set()
        await receiver.wait_for(lambda r: len(r) == 2, "both deliveries after the database is back")
        await eventually(lambda: all_in(store, OutboxStatus.DELIVERED, 2), "both rows delivered")
    assert p.health().status == "Healthy"
