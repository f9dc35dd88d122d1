"""Wake-ups between replicas: PostgreSQL ``LISTEN flowkeeper``.

Migration 0006's triggers ``NOTIFY flowkeeper`` when an instance becomes runnable with
no lease (``work``), a timer is created (``timer:<due, epoch seconds>``), an outbox
row is written (``outbox``) or a definition is deployed (``definition``).
:class:`PostgresListener` holds one connection of its own (outside the pool: a
listening connection must stay open) and hands every payload to a callback.
Notifications are hints: a lost one costs at most a poll interval, and after a
reconnect the callback gets ``reconnected`` so that everything looks at the database
again (anything notified while disconnected was missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from flowkeeper.store.urls import DatabaseUrl
from flowkeeper.waiting import until_any

log = logging.getLogger("flowkeeper.notifications")

CHANNEL = "flowkeeper"
RECONNECTED = "reconnected"

#: The listening connection's name in ``pg_stat_activity``.
APPLICATION_NAME = "flowkeeper-listener"

#: How often an idle listening connection is checked (a dead peer is not always noticed).
KEEPALIVE = 30.0


class Listener(Protocol):
    """A source of wake-up notes (see the module docstring)."""

    connected: asyncio.Event
    last_error: str | None

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set."""


class PostgresListener:
    """Listens on the ``flowkeeper`` channel until stopped, reconnecting by itself."""

    def __init__(self, url: DatabaseUrl, on_note: Callable[[str], None], *, connect_timeout: float = 10.0):
        self._dsn = url.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._safe = url.safe
        self._on_note = on_note
        self._connect_timeout = connect_timeout
        #: Set while a listening connection is open.
        self.connected = asyncio.Event()
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set; reconnect with back-off when the connection drops."""
        import asyncpg

        backoff = 0.1
        first = True
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    server_settings={"application_name": APPLICATION_NAME},
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                self.last_error = f"{type(exc).__name__}: cannot connect to {self._safe}"
                log.warning("Notification listener: %s; retrying in %.1fs", self.last_error, backoff)
                await until_any(backoff, stop)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                connection.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, self._received)
                self.connected.set()
                self.last_error = None
                backoff = 0.1
                if not first:
                    self._on_note(RECONNECTED)
                first = False
                while not (stop.is_set() or lost.is_set()):
                    await until_any(KEEPALIVE, stop, lost)
                    if not (stop.is_set() or lost.is_set()):
                        await connection.execute("SELECT 1", timeout=self._connect_timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2.0)
            if not stop.is_set():
                log.warning("Notification listener lost its connection; reconnecting")

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._on_note(payload)
        except Exception:  # a hint must never kill the listener
            log.exception("Notification handler failed for %r", payload)
