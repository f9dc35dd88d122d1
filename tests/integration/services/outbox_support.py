"""Support of the outbox-processor tests: loopback webhook receivers, RabbitMQ, processors.

The package's ``conftest.py`` makes the fixtures here available to its tests.

- ``receivers()`` starts a :class:`Receiver` (an HTTP/1.1 server with keep-alive on
  127.0.0.1, in the test's event loop) that records every request and answers
  ``status``; ``gate`` holds its answers until set.
- ``running(processor)`` runs a processor's loop for the ``async with`` block and stops
  it gracefully at the end.
- ``rabbitmq_url``: the local broker (``FLOWKEEPER_TEST_RABBITMQ_URL``, default
  ``amqp://guest:guest@127.0.0.1:5672/``); the tests skip without it, unless ``CI=true``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from flowkeeper.records import OutboxRecord
from flowkeeper.services.outbox import OutboxProcessor
from flowkeeper.store import Store
from tests.integration.store.conftest import Make

#: The longest a test waits for something that should happen (a guard, not a measurement).
GUARD = 30.0

RABBITMQ_URL_ENV = "FLOWKEEPER_TEST_RABBITMQ_URL"


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event


class Receiver:
    """A webhook endpoint on loopback: records requests, answers ``status``."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[Received] = []
        #: Raw bytes to answer instead of the status line (chunked bodies, no length, ...).
        self.raw_answer: bytes | None = None
        #: Close each connection after answering (without saying so: a stale keep-alive).
        self.close_after_answer = False
        self.connections = 0
        #: When not None, answers wait until it is set (requests are recorded at once).
        self.gate: asyncio.Event | None = None
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:  # keep-alive: one request after another on the connection
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(request_line.split(" ")[1], headers, body, time.monotonic())
                async with self._changed:
                    self.requests.append(received)
                    self._changed.notify_all()
                if self.gate is not None:
                    await self.gate.wait()
                text = b"" if self.status == 204 else b"receiver says no"
                head_out = b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n" % (self.status, len(text))
                writer.write(self.raw_answer if self.raw_answer is not None else head_out + text)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()

    async def wait_for(self, condition: Callable[[list[Received]], bool], what: str) -> list[Received]:
        """Wait until ``condition(requests)`` holds (at most ``GUARD`` seconds)."""
        try:
            async with asyncio.timeout(GUARD), self._changed:
                await self._changed.wait_for(lambda: condition(self.requests))
        except TimeoutError:
            got = len(self.requests)
            raise AssertionError(f"timed out waiting for {what}; got {got} request(s)") from None
        return list(self.requests)

    def ids(self) -> list[str]:
        """The ``id`` of every event received, in arrival order."""
        return [r.event["id"] for r in self.requests]


ReceiverFactory = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receivers() -> AsyncIterator[ReceiverFactory]:
    """``await receivers(status=204)`` -> a started receiver (closed at teardown)."""
    started: list[Receiver] = []

    async def start(status: int = 204) -> Receiver:
        receiver = await Receiver(status).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        if receiver.gate is not None:
            receiver.gate.set()
        await receiver.close()


def signature_is_valid(request: Received, secret: str) -> bool:
    """Standard Webhooks: ``v1,`` + base64(HMAC-SHA256(secret, "<id>.<timestamp>.<body>"))."""
    message_id = request.headers["webhook-id"]
    timestamp = request.headers["webhook-timestamp"]
    signed = f"{message_id}.{timestamp}.".encode() + request.body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    given = [s.removeprefix("v1,") for s in request.headers["webhook-signature"].split(" ")]
    return any(hmac.compare_digest(expected, s) for s in given)


@contextlib.asynccontextmanager
async def running(processor: OutboxProcessor) -> AsyncIterator[OutboxProcessor]:
    """Run ``processor`` for the block; stop it gracefully afterwards."""
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    try:
        yield processor
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, GUARD)
        finally:
            if not task.done():
                task.cancel()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``check()`` is true, polling (for database state, which signals nothing)."""
    try:
        async with asyncio.timeout(GUARD):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def emitted(store: Store, make: Make, count: int, type: str = "com.example.done") -> list[OutboxRecord]:
    """``count`` outbox rows written by one checkpoint, as a workflow's ``emit`` writes them."""
    instance = await make.claimed(store)
    now = await store.now()
    records = tuple(
        make.outbox(
            instance.id,
            next_attempt_at=now,
            event={"specversion": "1.0", "id": f"evt-{n}-{instance.id}", "source": "tests", "type": type,
                   "data": {"n": n}},
        )
        for n in range(count)
    )  # fmt: skip
    await store.checkpoint(make.checkpoint(instance, outbox=records))
    return list(records)


@pytest.fixture
def rabbitmq_url() -> str:
    """The local RabbitMQ broker's URL (skipped when it is not running, outside CI)."""
    url = os.environ.get(RABBITMQ_URL_ENV, "amqp://guest:guest@127.0.0.1:5672/")
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            pass
    except OSError:
        where = f"{parts.hostname}:{parts.port}"
        message = f"RabbitMQ is not reachable at {where} (start it: rabbitmq-server -detached)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; in CI it must run", pytrace=False)
        pytest.skip(message)
    return url
