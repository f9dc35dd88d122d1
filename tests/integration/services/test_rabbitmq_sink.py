"""The RabbitMQ sink against the local broker: persistent, confirmed, reconnecting."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from flowkeeper.config import OutboxProcessorSettings, RabbitMqSinkSettings
from flowkeeper.records import OutboxStatus
from flowkeeper.services.outbox import OutboxProcessor
from flowkeeper.services.sinks import DeliveryFailed, RabbitMqSink
from flowkeeper.store import Store
from tests.integration.services.outbox_support import GUARD, emitted, eventually, running
from tests.integration.store.conftest import Make


class Bound:
    """A topic exchange and a temporary queue bound to it (``#``: every routing key)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.exchange_name = f"flowkeeper.tests.{uuid.uuid4().hex[:12]}"

    async def open(self) -> Bound:
        self.connection = await aio_pika.connect(self.url)
        await self.bind()
        return self

    async def bind(self) -> None:
        """Declare the exchange as the sink does, and a fresh exclusive queue on it."""
        self.channel = await self.connection.channel()
        self.exchange = await self.channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self.queue: AbstractQueue = await self.channel.declare_queue(exclusive=True)
        await self.queue.bind(self.exchange, routing_key="#")

    async def take(self, count: int) -> list[AbstractIncomingMessage]:
        """The next ``count`` messages (at most ``GUARD`` seconds)."""
        messages: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(GUARD), self.queue.iterator() as incoming:
            async for message in incoming:
                await message.ack()
                messages.append(message)
                if len(messages) == count:
                    break
        return messages

    async def close(self) -> None:
        channel = await self.connection.channel()
        await channel.exchange_delete(self.exchange_name)
        await self.connection.close()


@pytest.fixture
async def bound(rabbitmq_url: str) -> AsyncIterator[Bound]:
    bound = await Bound(rabbitmq_url).open()
    yield bound
    await bound.close()


def rabbit(bound: Bound, **kw: Any) -> RabbitMqSink:
    fields: dict[str, Any] = {
        "name": "bus",
        "type": "rabbitmq",
        "url": bound.url,
        "exchange": bound.exchange_name,
    }
    return RabbitMqSink(RabbitMqSinkSettings(**(fields | kw)))


async def test_events_are_published_persistent_and_confirmed(store: Store, make: Make, bound: Bound) -> None:
    records = await emitted(store, make, 3, type="com.example.order.placed")
    settings = OutboxProcessorSettings(batch_size=10)
    async with running(OutboxProcessor(store, settings, sinks=[rabbit(bound)])):
        messages = await bound.take(3)
        await eventually(
            lambda: _all_delivered(store, [r.id for r in records]), "every row to be marked delivered"
        )
    by_id = {m.message_id: m for m in messages}
    assert set(by_id) == {r.event["id"] for r in records}
    for record in records:
        message = by_id[record.event["id"]]
        assert message.content_type == "application/cloudevents+json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.routing_key == "com.example.order.placed"  # default: the event's type
        assert message.type == "com.example.order.placed"
        assert json.loads(message.body) == record.event
        assert (await store.get_outbox(record.id)).delivered_to == ("bus",)


async def _all_delivered(store: Store, ids: list[str]) -> bool:
    return all([(await store.get_outbox(i)).status is OutboxStatus.DELIVERED for i in ids])


async def test_a_configured_routing_key(bound: Bound) -> None:
    sink = rabbit(bound, routing_key="events.all")
    try:
        await sink.deliver({"specversion": "1.0", "id": "e-1", "source": "t", "type": "x.y"})
        [message] = await bound.take(1)
    finally:
        await sink.aclose()
    assert message.routing_key == "events.all"
    assert message.message_id == "e-1"


async def test_after_the_broker_closes_the_channel_the_next_delivery_reconnects(bound: Bound) -> None:
    sink = rabbit(bound)
    event = {"specversion": "1.0", "source": "t", "type": "x.y"}
    try:
        await sink.deliver({**event, "id": "before"})
        # The exchange disappears under the sink: the broker closes its channel (404).
        await bound.channel.exchange_delete(bound.exchange_name)
        with pytest.raises(DeliveryFailed) as failed:
            await sink.deliver({**event, "id": "lost"})
        assert f"exchange {bound.exchange_name}" in str(failed.value)
        assert "guest:guest" not in str(failed.value)

        await bound.bind()  # the exchange is back, with a new queue
        await sink.deliver({**event, "id": "after"})  # on a new channel and connection
        [message] = await bound.take(1)
        assert message.message_id == "after"
    finally:
        await sink.aclose()


async def test_an_unreachable_broker_is_a_readable_failure_without_the_password() -> None:
    url = "amqp://app:pa55word@127.0.0.1:1/"  # nothing listens on port 1
    sink = RabbitMqSink(RabbitMqSinkSettings(name="bus", type="rabbitmq", url=url))
    with pytest.raises(DeliveryFailed) as failed:
        await sink.deliver({"specversion": "1.0", "id": "e", "source": "t", "type": "x"})
    await sink.aclose()
    message = str(failed.value)
    assert message.startswith("amqp://app:***@127.0.0.1:1/: exchange flowkeeper.events: ")
    assert "pa55word" not in message
