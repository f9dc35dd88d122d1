"""The webhook sink against loopback receivers: answers, errors, keep-alive, framing."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from typing import Any

import pytest

from flowkeeper.config import WebhookSinkSettings
from flowkeeper.services.sinks import DeliveryFailed, WebhookSink
from tests.integration.services.outbox_support import Receiver, ReceiverFactory, signature_is_valid

EVENT = {"specversion": "1.0", "id": "evt-1", "source": "tests", "type": "com.example.done", "data": {"n": 1}}


def sink(url: str, **kw: Any) -> WebhookSink:
    return WebhookSink(WebhookSinkSettings(name="hook", type="webhook", url=url, **kw))


async def delivered(receiver: Receiver, **kw: Any) -> None:
    hook = sink(receiver.url, **kw)
    try:
        await hook.deliver(EVENT)
    finally:
        await hook.aclose()


async def test_a_2xx_answer_is_a_delivery_of_the_signed_cloudevent(receivers: ReceiverFactory) -> None:
    receiver = await receivers(status=202)
    await delivered(receiver, secret="s3cret")
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.event == EVENT
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.headers["webhook-id"] == "evt-1"
    assert signature_is_valid(request, "s3cret")
    assert request.headers["user-agent"] == "flowkeeper-outbox"


@pytest.mark.parametrize("status", [301, 400, 404, 500, 503])
async def test_any_other_answer_is_a_failure_quoting_the_answer(
    receivers: ReceiverFactory, status: int
) -> None:
    receiver = await receivers(status=status)
    with pytest.raises(DeliveryFailed) as failed:
        await delivered(receiver, secret="s3cret")
    assert str(failed.value) == f"{receiver.url} answered HTTP {status}: receiver says no"


async def test_an_answer_quoting_the_secret_does_not_leak_it(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    body = b"bad signature; expected key s3cret-value"
    receiver.raw_answer = b"HTTP/1.1 401 No\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    with pytest.raises(DeliveryFailed) as failed:
        await delivered(receiver, secret="s3cret-value")
    assert "s3cret-value" not in str(failed.value)
    assert "answered HTTP 401: bad signature; expected key ***" in str(failed.value)


async def test_user_info_is_sent_as_basic_auth_and_masked_in_errors(receivers: ReceiverFactory) -> None:
    receiver = await receivers(status=500)
    url = receiver.url.replace("http://", "http://bot:pa%40ss@")
    with pytest.raises(DeliveryFailed) as failed:
        await sink(url).deliver(EVENT)
    [request] = receiver.requests
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"bot:pa@ss").decode()
    assert "pa%40ss" not in str(failed.value)
    assert "pa@ss" not in str(failed.value)
    assert str(failed.value).startswith("http://bot:***@127.0.0.1:")


async def test_nothing_listening_is_a_readable_failure() -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await sink("http://127.0.0.1:9/hook").deliver(EVENT)  # the discard port: closed
    assert (
        str(failed.value) == "http://127.0.0.1:9/hook: cannot connect: Connect call failed ('127.0.0.1', 9)"
    )


async def test_a_receiver_that_does_not_answer_times_out(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    receiver.gate = asyncio.Event()
    with pytest.raises(DeliveryFailed) as failed:
        await delivered(receiver, timeout=timedelta(milliseconds=50))
    assert str(failed.value) == f"{receiver.url}: no answer within 0.05s"


async def test_connections_are_kept_alive(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    hook = sink(receiver.url)
    try:
        for n in range(20):
            await hook.deliver({**EVENT, "id": f"evt-{n}"})
    finally:
        await hook.aclose()
    assert len(receiver.requests) == 20
    assert receiver.connections == 1


async def test_parallel_deliveries_share_a_bounded_pool(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    hook = WebhookSink(WebhookSinkSettings(name="hook", type="webhook", url=receiver.url), max_connections=4)
    try:
        await asyncio.gather(*(hook.deliver({**EVENT, "id": f"evt-{n}"}) for n in range(40)))
    finally:
        await hook.aclose()
    assert sorted(receiver.ids()) == sorted(f"evt-{n}" for n in range(40))
    assert receiver.connections <= 4


async def test_a_keep_alive_connection_the_server_closed_is_replaced(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    receiver.close_after_answer = True  # every connection dies after one answer, unannounced
    hook = sink(receiver.url)
    try:
        for n in range(5):
            await hook.deliver({**EVENT, "id": f"evt-{n}"})
    finally:
        await hook.aclose()
    assert receiver.ids() == [f"evt-{n}" for n in range(5)]
    assert receiver.connections == 5


@pytest.mark.parametrize(
    ("answer", "closes"),
    [
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end", True),
        (b"HTTP/1.0 204 No Content\r\n\r\n", True),
    ],
)
async def test_answers_framed_every_way(receivers: ReceiverFactory, answer: bytes, closes: bool) -> None:
    receiver = await receivers()
    receiver.raw_answer = answer
    receiver.close_after_answer = closes
    hook = sink(receiver.url)
    try:
        await hook.deliver(EVENT)
        await hook.deliver({**EVENT, "id": "evt-2"})
    finally:
        await hook.aclose()
    assert receiver.ids() == ["evt-1", "evt-2"]
    assert receiver.connections == (2 if closes else 1)


async def test_a_garbled_answer_is_a_failure(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    receiver.raw_answer = b"SMTP ready\r\n\r\n"
    with pytest.raises(DeliveryFailed, match="invalid HTTP answer"):
        await delivered(receiver)


async def test_an_event_id_that_would_split_the_request_is_refused(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    hook = sink(receiver.url, secret="s3cret")
    try:
        with pytest.raises(DeliveryFailed, match="invalid header value"):
            await hook.deliver({**EVENT, "id": "evil\r\nX-Injected: 1"})
    finally:
        await hook.aclose()
    assert receiver.requests == []
