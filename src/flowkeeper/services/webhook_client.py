"""A lean HTTP/1.1 client for webhook deliveries: one URL, a pool of keep-alive connections.

Why not httpx (which the activities use): a webhook sink sends many small POSTs to one
endpoint, and there httpx costs about a millisecond of CPU per request (its connection
pool also scans every connection for every request), capping one processor below a
thousand deliveries per second on a small machine. Here a request is one ``write`` and
``httptools`` (the C parser uvicorn uses) reads the answer on an asyncio protocol, for
a few tens of microseconds.

What it does: ``POST`` with the caller's headers and a body, over ``http://`` or
``https://`` (certificates verified), user-info in the URL sent as Basic
authentication, answers framed by ``Content-Length``, chunked encoding or the end of
the connection, keep-alive honoured both ways. What it does not: redirects (an answer
like any other), proxies, HTTP/2. A request that finds a reused idle connection closed
by the server before any answer is sent again once on a fresh connection (the server
had closed it between requests; the webhook id lets a receiver drop the rare duplicate).
Timeouts are the caller's (``asyncio.timeout`` around :meth:`WebhookClient.post`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httptools

#: The answer's body is kept up to this many bytes (error messages quote its start).
MAX_BODY = 4096


class TransportError(Exception):
    """The request could not be sent or its answer not read (message: what happened)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: status and (the start of) the body."""

    status: int
    body: bytes


class _Lost(TransportError):
    """The connection closed before any byte of the answer."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._body = bytearray()
        self._started = False  # a byte of the current answer has arrived
        self._headers_done = False  # the current answer's status and headers have arrived
        self.closed = False
        self.keep_alive = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"invalid HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done:
                # An answer without length ends with its connection.
                self._complete()
            elif self._started:
                self._fail(TransportError("the connection closed in the middle of the answer"))
            else:
                reason = f": {exc}" if exc else ""
                self._fail(_Lost(f"the server closed the connection{reason}"))

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        if len(self._body) < MAX_BODY:
            self._body += body[: MAX_BODY - len(self._body)]

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        self._complete()

    # ours

    def _complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self._parser.get_status_code(), bytes(self._body)))

    def _fail(self, error: TransportError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    async def send(self, request: bytes) -> Answer:
        if self.closed or self._transport is None:
            raise _Lost("the connection is closed")
        self._body.clear()
        self._started = self._headers_done = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class WebhookClient:
    """POSTs to one URL over up to ``max_connections`` keep-alive connections."""

    def __init__(self, url: str, *, max_connections: int = 50) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the URL must be http:// or https:// with a host")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        authority = host if parts.port is None else f"{host}:{parts.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: flowkeeper-outbox\r\n"
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            head += f"Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
        self._head = head.encode("ascii")
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """Send one request and read its answer; ``TransportError`` when that fails.

        A header value with a control character or outside ASCII is refused
        (``ValueError``): it could split the request.
        """
        extra = "".join(f"{name}: {_value(value)}\r\n" for name, value in headers.items())
        request = self._head + f"{extra}Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body
        async with self._slots:
            for attempt in (1, 2):
                connection, reused = await self._connection()
                try:
                    answer = await connection.send(request)
                except _Lost:
                    connection.close()
                    if reused and attempt == 1:
                        continue  # the server closed it while it was idle: once more, on a new one
                    raise
                except BaseException:
                    connection.close()  # cancelled or failed mid-request: its state is unknown
                    raise
                if connection.keep_alive and not connection.closed and not self._closed:
                    self._idle.append(connection)
                else:
                    connection.close()
                return answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(self) -> tuple[_Connection, bool]:
        """An idle connection (reused: True) or a new one."""
        if self._closed:
            raise TransportError("the client is closed")
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection, True
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        except ssl.SSLError as exc:
            raise TransportError(f"TLS handshake failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise TransportError(f"cannot connect: {exc.strerror or exc}") from None
        return connection, False

    async def aclose(self) -> None:
        """Close every idle connection; the ones in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _value(value: str) -> str:
    if not value.isascii() or _CONTROL.search(value):
        raise ValueError(f"invalid header value {value!r}")
    return value
