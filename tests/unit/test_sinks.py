"""Webhook sink without a network (httpx's mock transport): headers, signatures, errors, filters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from flowkeeper.config import OutboxProcessorSettings, RabbitMqSinkSettings, WebhookSinkSettings
from flowkeeper.services.sinks import (
    DeliveryFailed,
    RabbitMqSink,
    Sink,
    WebhookSink,
    build_sinks,
    event_body,
    signing_key,
)

SECRET = "whsec_" + base64.b64encode(b"sixteen byte key").decode()
EVENT = {"specversion": "1.0", "id": "evt-1", "source": "tests", "type": "com.example.done", "data": {"é": 1}}


def sink(handler: Any = None, **kw: Any) -> WebhookSink:
    fields: dict[str, Any] = {"name": "hook", "type": "webhook", "url": "https://receiver.test/in"}
    transport = httpx.MockTransport(handler or (lambda request: httpx.Response(204)))
    return WebhookSink(WebhookSinkSettings(**(fields | kw)), transport=transport)


def test_the_standard_webhooks_signature() -> None:
    body = event_body(EVENT)
    headers = sink(secret=SECRET).headers(EVENT, body, now=1_700_000_000)
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-timestamp"] == "1700000000"
    signed = b"evt-1.1700000000." + body
    expected = base64.b64encode(hmac.new(b"sixteen byte key", signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_secrets_without_the_whsec_prefix_are_their_own_bytes() -> None:
    assert signing_key("plain secret") == b"plain secret"
    assert signing_key("whsec_not base64!") == b"whsec_not base64!"
    assert signing_key(SECRET) == b"sixteen byte key"


def test_no_secret_no_signature_headers() -> None:
    headers = sink().headers(EVENT, event_body(EVENT))
    assert headers == {"Content-Type": "application/cloudevents+json"}


def test_the_body_is_the_structured_cloudevent() -> None:
    assert json.loads(event_body(EVENT)) == EVENT
    assert "é".encode() in event_body(EVENT)  # UTF-8, not \\u escapes


async def test_a_2xx_answer_is_a_delivery() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    hook = sink(handler, secret=SECRET)
    await hook.deliver(EVENT)
    await hook.aclose()
    [request] = seen
    assert request.method == "POST"
    assert request.headers["webhook-id"] == "evt-1"
    assert json.loads(request.content) == EVENT


@pytest.mark.parametrize("status", [301, 400, 404, 500, 503])
async def test_any_other_answer_is_a_failure_that_never_shows_the_secret(status: int) -> None:
    raw_secret = "very-secret-text"
    hook = sink(
        lambda request: httpx.Response(status, text=f"bad signature for {raw_secret}"), secret=raw_secret
    )
    with pytest.raises(DeliveryFailed) as failed:
        await hook.deliver(EVENT)
    message = str(failed.value)
    assert message.startswith(f"https://receiver.test/in answered HTTP {status}")
    assert raw_secret not in message


async def test_transport_errors_are_readable_and_mask_the_url_password() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"connection refused to {request.url}")

    hook = sink(refuse, url="https://bot:hunter2@receiver.test/in", secret="abc")
    with pytest.raises(DeliveryFailed) as failed:
        await hook.deliver(EVENT)
    message = str(failed.value)
    assert message.startswith("https://bot:***@receiver.test/in: ConnectError: connection refused")
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("patterns", "kind", "accepted"),
    [
        ([], "anything.at.all", True),
        (["com.example.done"], "com.example.done", True),
        (["com.example.done"], "com.example.done.v2", False),
        (["com.example.*"], "com.example.done", True),
        (["org.*", "com.example.d?ne"], "com.example.done", True),
        (["org.*"], "com.example.done", False),
    ],
)
def test_event_type_filters(patterns: list[str], kind: str, accepted: bool) -> None:
    assert sink(event_types=patterns).accepts({**EVENT, "type": kind}) is accepted


def test_build_sinks_from_settings() -> None:
    settings = OutboxProcessorSettings(
        batch_size=25,
        sinks=[
            WebhookSinkSettings(
                name="hook", type="webhook", url="https://x/in", timeout=timedelta(seconds=3)
            ),
            RabbitMqSinkSettings(name="bus", type="rabbitmq", url="amqp://u:pw@h/"),
        ],
    )
    hook, bus = build_sinks(settings)
    assert isinstance(hook, WebhookSink)
    assert isinstance(bus, RabbitMqSink)
    assert all(isinstance(s, Sink) for s in (hook, bus))
    assert (hook.name, hook.timeout) == ("hook", 3.0)
    assert (bus.name, bus.exchange_name, bus.routing_key) == ("bus", "flowkeeper.events", None)
    assert bus.safe_url == "amqp://u:***@h/"
    assert build_sinks(OutboxProcessorSettings()) == []
