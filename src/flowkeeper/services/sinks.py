"""External sinks of emitted events: a webhook (HTTP POST) and RabbitMQ (a topic exchange).

A :class:`Sink` takes one CloudEvent (the JSON object a workflow's ``emit`` wrote) and
either delivers it or raises :class:`DeliveryFailed` with a message fit for logs and the
outbox row's ``last_error``: it never contains a secret or a password. Delivery is at
least once; every delivery of an event carries the event's ``id`` (``webhook-id``, the
AMQP ``message_id``), so receivers can drop duplicates.

- :class:`WebhookSink`: ``POST`` of the structured CloudEvent
  (``Content-Type: application/cloudevents+json``) over a pool of keep-alive
  connections (:mod:`flowkeeper.services.webhook_client`);
  any 2xx answer is a delivery. With a secret, signed as Standard Webhooks sign:
  ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature:
  v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``; the key is the secret's
  UTF-8 bytes, or the base64-decoded rest of a ``whsec_...`` secret.
- :class:`RabbitMqSink`: publishes to a durable topic exchange (declared on connect),
  persistent messages with publisher confirms, ``message_id`` = the event id, routing
  key = the configured one or the event's ``type``. After a broker or connection
  failure the next delivery connects again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from flowkeeper.config import OutboxProcessorSettings, RabbitMqSinkSettings, WebhookSinkSettings, mask_url
from flowkeeper.services.webhook_client import TransportError, WebhookClient

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

log = logging.getLogger("flowkeeper.outbox")

CLOUDEVENTS_JSON = "application/cloudevents+json"

Event = Mapping[str, Any]


class DeliveryFailed(Exception):
    """A sink could not deliver an event; the message is safe to log and store."""


@runtime_checkable
class Sink(Protocol):
    """Where emitted events go."""

    #: Unique among the configured sinks; recorded in each row's ``delivered_to``.
    name: str

    def accepts(self, event: Event) -> bool:
        """Whether this sink wants the event (by its ``type``)."""
        ...

    async def deliver(self, event: Event) -> None:
        """Deliver once, within the sink's timeout; ``DeliveryFailed`` otherwise."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def event_body(event: Event) -> bytes:
    """The structured-mode body of an event: compact JSON, UTF-8."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret (``whsec_<base64>`` decoded, else the UTF-8 bytes)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass  # not base64 after all: the text itself is the key
    return secret.encode()


def webhook_signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _scrubbed(text: str, secrets: Sequence[str]) -> str:
    """``text`` without any of ``secrets`` (exceptions of libraries may quote URLs)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _url_secrets(url: str) -> list[str]:
    """The password of a URL's user-info, as written and percent-decoded."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


class _Filtered:
    """A sink's name, event-type filter and timeout."""

    def __init__(self, name: str, event_types: Sequence[str], timeout: timedelta) -> None:
        self.name = name
        self.event_types = tuple(event_types)
        self.timeout = timeout.total_seconds()

    def accepts(self, event: Event) -> bool:
        """Every event when no types are configured; else one whose ``type`` matches a pattern."""
        if not self.event_types:
            return True
        kind = event.get("type")
        return isinstance(kind, str) and any(fnmatchcase(kind, pattern) for pattern in self.event_types)


class WebhookSink(_Filtered):
    """POSTs each event to a URL; 2xx is a delivery."""

    def __init__(self, settings: WebhookSinkSettings, *, max_connections: int = 50) -> None:
        super().__init__(settings.name, settings.event_types, settings.timeout)
        self.url = settings.url
        self.safe_url = mask_url(settings.url)
        secret = settings.secret.get_secret_value() if settings.secret is not None else None
        self._key = signing_key(secret) if secret else None
        self._secrets = [s for s in (secret, *_url_secrets(settings.url)) if s]
        # Keep-alive connections for the deliveries in flight: opening a connection per
        # event would cost more than the request itself.
        self._client = WebhookClient(settings.url, max_connections=max_connections)

    def headers(self, event: Event, body: bytes, now: float | None = None) -> dict[str, str]:
        """The request headers of one delivery (signed when a secret is set)."""
        headers = {"Content-Type": CLOUDEVENTS_JSON}
        if self._key is not None:
            message_id = str(event.get("id", ""))
            timestamp = int(time.time() if now is None else now)
            headers["webhook-id"] = message_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = webhook_signature(self._key, message_id, timestamp, body)
        return headers

    async def deliver(self, event: Event) -> None:
        """POST the event; ``DeliveryFailed`` for a non-2xx answer, a transport error or a timeout."""
        body = event_body(event)
        try:
            async with asyncio.timeout(self.timeout):  # waiting for a free connection included
                answer = await self._client.post(body, self.headers(event, body))
        except TimeoutError:
            raise DeliveryFailed(f"{self.safe_url}: no answer within {self.timeout:g}s") from None
        except (TransportError, ValueError) as exc:
            raise DeliveryFailed(f"{self.safe_url}: {_scrubbed(str(exc), self._secrets)}") from None
        if not 200 <= answer.status < 300:
            text = _scrubbed(answer.body[:200].decode("utf-8", "replace").strip(), self._secrets)
            detail = f": {text}" if text else ""
            raise DeliveryFailed(f"{self.safe_url} answered HTTP {answer.status}{detail}")

    async def aclose(self) -> None:
        """Close the idle connections."""
        await self._client.aclose()


class RabbitMqSink(_Filtered):
    """Publishes each event to a durable topic exchange with publisher confirms."""

    def __init__(self, settings: RabbitMqSinkSettings) -> None:
        super().__init__(settings.name, settings.event_types, settings.timeout)
        self.url = settings.url
        self.safe_url = settings.safe_url
        self.exchange_name = settings.exchange
        self.routing_key = settings.routing_key
        self._secrets = _url_secrets(settings.url)
        self._lock = asyncio.Lock()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def _connected(self) -> AbstractExchange:
        """The exchange on a live channel, connecting (again) when there is none."""
        async with self._lock:  # one connection attempt at a time, shared by all deliveries
            if (
                self._exchange is not None
                and self._channel is not None
                and self._connection is not None
                and not self._channel.is_closed
                and not self._connection.is_closed
            ):
                return self._exchange
            await self._disconnect()
            import aio_pika  # here: a deployment without a RabbitMQ sink never loads it

            connection = await aio_pika.connect(self.url, timeout=self.timeout)
            try:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            except BaseException:
                await connection.close()
                raise
            self._connection, self._channel, self._exchange = connection, channel, exchange
            log.info(
                "Outbox sink %s connected to %s (exchange %s)", self.name, self.safe_url, self.exchange_name
            )
            return exchange

    async def _disconnect(self) -> None:
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception:  # already broken: nothing left to release
                log.debug("Outbox sink %s: closing a broken connection failed", self.name)

    async def deliver(self, event: Event) -> None:
        """Publish persistently and wait for the broker's confirm; ``DeliveryFailed`` otherwise."""
        import aio_pika

        message = aio_pika.Message(
            event_body(event),
            content_type=CLOUDEVENTS_JSON,
            content_encoding="utf-8",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(event.get("id", "")),
            type=str(event.get("type", "")) or None,
        )
        routing_key = self.routing_key or str(event.get("type", ""))
        try:
            async with asyncio.timeout(self.timeout):
                exchange = await self._connected()
                # mandatory=False: an event nobody has bound a queue for yet is not an error.
                await exchange.publish(message, routing_key=routing_key, mandatory=False)
        except TimeoutError:
            raise DeliveryFailed(
                f"{self.safe_url}: exchange {self.exchange_name}: no confirm within {self.timeout:g}s"
            ) from None
        except Exception as exc:
            # A closed connection or channel is replaced by the next delivery (_connected).
            reason = _scrubbed(str(exc), self._secrets) or type(exc).__name__
            raise DeliveryFailed(
                f"{self.safe_url}: exchange {self.exchange_name}: {type(exc).__name__}: {reason}"
            ) from None

    async def aclose(self) -> None:
        """Close the connection."""
        async with self._lock:
            await self._disconnect()


def build_sinks(settings: OutboxProcessorSettings, *, max_connections: int | None = None) -> list[Sink]:
    """The configured sinks; webhooks keep up to ``max_connections`` each (default: the batch size)."""
    connections = max_connections or settings.batch_size
    sinks: list[Sink] = []
    for sink in settings.sinks:
        if isinstance(sink, WebhookSinkSettings):
            sinks.append(WebhookSink(sink, max_connections=connections))
        else:
            sinks.append(RabbitMqSink(sink))
    return sinks
