"""Sinks without a network: signatures, bodies, event-type filters, building from settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from flowkeeper.config import OutboxProcessorSettings, RabbitMqSinkSettings, WebhookSinkSettings
from flowkeeper.services.sinks import RabbitMqSink, Sink, WebhookSink, build_sinks, event_body, signing_key

SECRET = "whsec_" + base64.b64encode(b"sixteen byte key").decode()
EVENT = {"specversion": "1.0", "id": "evt-1", "source": "tests", "type": "com.example.done", "data": {"é": 1}}
S = timedelta(seconds=1)


def webhook(**kw: object) -> WebhookSink:
    fields: dict[str, object] = {"name": "hook", "type": "webhook", "url": "https://receiver.test/in"}
    return WebhookSink(WebhookSinkSettings.model_validate(fields | kw))


def test_the_standard_webhooks_signature() -> None:
    body = event_body(EVENT)
    headers = webhook(secret=SECRET).headers(EVENT, body, now=1_700_000_000)
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
    assert webhook().headers(EVENT, event_body(EVENT)) == {"Content-Type": "application/cloudevents+json"}


def test_the_body_is_the_structured_cloudevent_in_utf8() -> None:
    assert json.loads(event_body(EVENT)) == EVENT
    assert "é".encode() in event_body(EVENT)


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
    assert webhook(event_types=patterns).accepts({**EVENT, "type": kind}) is accepted
    assert webhook(event_types=patterns).accepts({"id": "no type"}) is (patterns == [])


def test_build_sinks_from_settings() -> None:
    settings = OutboxProcessorSettings(
        batch_size=25,
        sinks=[
            WebhookSinkSettings(name="hook", type="webhook", url="https://x/in", timeout=3 * S),
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
