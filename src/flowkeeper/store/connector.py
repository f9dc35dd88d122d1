"""Connections: engines, transactions, life cycle and the dialect hooks.

:class:`Connector` is the half of a store that knows how to talk to one database (the
SQLite and PostgreSQL adapters fill in its hooks); :class:`~flowkeeper.store.base.SqlStore`
is the half that knows what to say. Every database error leaves a connector as a
:class:`~flowkeeper.errors.StoreError` (see :mod:`flowkeeper.store.failures`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

from sqlalchemy import ColumnElement, Executable, Insert, Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowkeeper.errors import FlowkeeperError, StoreUnavailable
from flowkeeper.store.failures import ErrorTranslator
from flowkeeper.store.notifications import Listener
from flowkeeper.store.statement_batches import BatchedStatement
from flowkeeper.store.urls import DatabaseUrl

#: The writes that may carry their log rows in the same statement.
FusedWrite = Literal["create", "checkpoint", "checkpoint_release_lease"]

_T = TypeVar("_T")

#: The body of a write transaction: awaits nothing but the connection it is given.
WriteBody = Callable[[AsyncConnection], Coroutine[Any, Any, _T]]

# Our own errors and caller mistakes pass through untranslated.
_PASSTHROUGH = (FlowkeeperError, ValueError, TypeError)


class Connector(abc.ABC):
    """Engines and transactions for one database URL; subclasses supply the dialect hooks."""

    #: Whether open() makes ``min_pool_size`` connections up front (not for SQLite's
    #: single writer, whose readers connect on demand).
    warms_pool: ClassVar[bool] = False

    #: Whether ``SELECT ... FOR UPDATE`` means anything (PostgreSQL) or writers are
    #: serialised anyway (SQLite), in which case the explicit row locks are skipped.
    locks_rows: ClassVar[bool] = False

    #: Whether the fused checkpoint statement (``_fused_log_sql``) also deletes the
    #: applied and cancelled bookmarks it is given as ``p_gone``.
    fuses_bookmark_deletes: ClassVar[bool] = False

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        min_pool_size: int = 10,
        max_pool_size: int = 100,
        connect_timeout: float = 30,
        command_timeout: float = 60,
        echo: bool = False,
    ) -> None:
        if not 0 <= min_pool_size <= max_pool_size or max_pool_size < 1:
            raise ValueError("need 0 <= min_pool_size <= max_pool_size and max_pool_size >= 1")
        self._db_url = url
        #: The URL with its password masked (safe to log).
        self.url = url.safe
        self.min_pool_size = min_pool_size
        self.max_pool_size = max_pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.echo = echo
        self._errors = ErrorTranslator(url.password)
        self._writer: AsyncEngine | None = None  # transactions
        self._autocommit: AsyncEngine | None = None  # single-statement writes
        self._reader: AsyncEngine | None = None
        self._recycled_at = float("-inf")  # when _failed last replaced the pool

    # -- dialect hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _create_engines(self) -> tuple[AsyncEngine, AsyncEngine, AsyncEngine]:
        """(transactional writer, autocommit writer, reader) engines; they may share a pool."""
        ...

    @abc.abstractmethod
    def _now_sql(self) -> ColumnElement[Any]:
        """The clock as SQL (``now()`` or a bound ``p_now``)."""
        ...

    def _clock_reading_sql(self) -> ColumnElement[Any]:
        """The clock as SQL, read when the statement runs (to measure the offset of the
        host's clock from the database's); by default ``_now_sql``."""
        return self._now_sql()

    @abc.abstractmethod
    def _lease_until_sql(self) -> ColumnElement[Any]:
        """The clock plus a lease as SQL (binds ``p_lease`` or ``p_lease_until``)."""
        ...

    @abc.abstractmethod
    def _clock(self, lease: timedelta | None = None) -> dict[str, Any]:
        """Bind values the clock expressions need for one statement."""
        ...

    @abc.abstractmethod
    async def _read_clock(self, conn: AsyncConnection) -> datetime:
        """The database clock, read through ``conn``."""
        ...

    @abc.abstractmethod
    def _insert_or_ignore(self, table: Table) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` for ``table``."""
        ...

    def _fused_log_sql(self, write: FusedWrite) -> Executable | None:
        """One statement doing ``write`` (the instance INSERT or the guarded checkpoint
        UPDATE) and inserting the log rows given as ``rows.log_columns`` arrays,
        returning the instance row; None when the dialect cannot (a transaction of two
        statements does it then)."""
        return None

    def _batched(self, statement: Executable, operation: str) -> BatchedStatement | None:
        """``statement`` (a hot single-statement write returning instance rows, keyed by
        ``p_id``) with its concurrent executions pipelined; None where the dialect does
        not (SQLite batches whole transactions instead: :mod:`flowkeeper.store.group_commit`).
        ``operation`` names it in errors."""
        return None

    def _write_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around every use of the writer engine from the event loop (SQLite: the
        in-process writer lock, which its write batches hold too)."""
        return contextlib.nullcontext()

    def _read_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around every read (in-memory SQLite shares one connection)."""
        return contextlib.nullcontext()

    # -- connections ---------------------------------------------------------------------------

    async def _write(self, operation: str, body: WriteBody[_T], *, autocommit: bool = False) -> _T:
        """Run ``body`` as one write transaction and return what it returns.

        ``body`` awaits nothing but the connection it is given (SQLite runs it on the
        writer connection's thread, batched with others: :mod:`flowkeeper.store.group_commit`).
        ``autocommit`` when its only write is one self-contained statement, and it fails,
        if at all, before or in that statement.
        """
        async with self._transaction(operation, autocommit=autocommit) as conn:
            return await body(conn)

    @contextlib.asynccontextmanager
    async def _transaction(
        self, operation: str, *, autocommit: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction; ``autocommit`` when the write is one self-contained statement."""
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        assert self._autocommit is not None
        engine = self._autocommit if autocommit else self._writer
        try:
            async with self._write_guard(), engine.begin() as conn:
                yield conn
        except _PASSTHROUGH:
            raise
        except Exception as exc:
            raise await self._failed(exc, operation) from exc

    def _translated(self, error: BaseException, operation: str) -> BaseException:
        """What a caller sees for ``error`` raised during ``operation`` (for errors raised
        elsewhere than in :meth:`_transaction`, which translates its own)."""
        if isinstance(error, _PASSTHROUGH) or not isinstance(error, Exception):
            return error
        translated = self._errors.translate(error, operation)
        translated.__cause__ = error
        return translated

    @contextlib.asynccontextmanager
    async def _reading(self, operation: str) -> AsyncIterator[AsyncConnection]:
        if self._reader is None:
            await self.open()
        assert self._reader is not None
        try:
            async with self._read_guard(), self._reader.connect() as conn:
                yield conn
        except _PASSTHROUGH:
            raise
        except Exception as exc:
            raise await self._failed(exc, operation) from exc

    async def _failed(self, error: Exception, operation: str) -> FlowkeeperError:
        """Translate a driver error; after a lost connection, replace the pool's idle ones.

        When the server went away or terminated our sessions, every idle connection in
        the pool is dead too: without this each would fail one more operation before
        being discarded. At most once a second, for pooled servers (not SQLite).
        """
        translated = self._errors.translate(error, operation)
        if isinstance(translated, StoreUnavailable) and self.warms_pool and self._writer is not None:
            now = time.monotonic()
            if now - self._recycled_at >= 1.0:
                self._recycled_at = now
                engines = {id(e.pool): e for e in (self._writer, self._reader) if e is not None}
                for engine in engines.values():
                    with contextlib.suppress(Exception):
                        await engine.dispose()
        return translated

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the engines and connect (``min_pool_size`` connections), so a bad URL fails here."""
        if self._writer is not None:
            return
        self._writer, self._autocommit, self._reader = self._create_engines()
        try:
            async with self._write_guard(), self._writer.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            if self.warms_pool and self.min_pool_size > 1:
                await self._warm(self._writer, self.min_pool_size)
        except Exception as exc:
            await self.close()
            raise self._errors.translate(exc, "open") from exc

    @staticmethod
    async def _warm(engine: AsyncEngine, count: int) -> None:
        """Open ``count`` pooled connections at once (they stay in the pool)."""
        results = await asyncio.gather(*(engine.connect() for _ in range(count)), return_exceptions=True)
        for result in results:
            if isinstance(result, AsyncConnection):
                await result.close()
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure

    async def close(self) -> None:
        """Dispose of the pools; the store may be opened again."""
        engines = {id(e): e for e in (self._writer, self._autocommit, self._reader) if e is not None}
        self._writer = self._autocommit = self._reader = None
        for engine in engines.values():
            await engine.dispose()

    def pool_checked_out(self) -> int:
        """Database connections in use right now (no I/O: the pool's own count)."""
        # The engines may share one pool (PostgreSQL's autocommit engine is a view of it).
        pools = {id(e.pool): e.pool for e in (self._writer, self._reader, self._autocommit) if e is not None}
        total = 0
        for pool in pools.values():
            checkedout = getattr(pool, "checkedout", None)
            if callable(checkedout):
                total += int(checkedout())
        return total

    def notification_listener(self, on_note: Callable[[str], None]) -> Listener | None:
        """A listener for other replicas' wake-ups, or None where there are none (SQLite:
        one process owns the database file's work; polling covers the rest)."""
        return None

    async def ping(self) -> None:
        """One cheap round trip; ``StoreUnavailable`` when the database cannot be reached."""
        async with self._reading("ping") as conn:
            await conn.exec_driver_sql("SELECT 1")
