"""SQLite adapter: aiosqlite under SQLAlchemy's async engine, for embedded use and tests.

One writer connection. Write transactions queue and run in batches on its thread, each
batch one ``BEGIN IMMEDIATE … COMMIT`` with a savepoint per write (group commit:
:mod:`flowkeeper.store.group_commit`); ``BEGIN IMMEDIATE`` takes the write lock up front,
so a transaction never has to upgrade a read lock, the classic source of ``database is
locked``. An asyncio lock keeps batches apart from the other users of the writer
connection (migrations; the readers of an in-memory database, which share it). Readers
use their own connections; WAL mode lets them read while the writer writes. Every
connection is a :class:`~flowkeeper.store.sqlite_driver.DriverConnection`: one hop to
its thread per statement. The clock is Python's: SQLite runs in this process, on this
machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Insert, Table, bindparam, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, StaticPool

from flowkeeper.errors import StoreUnavailable
from flowkeeper.store import sqlite_driver
from flowkeeper.store.base import SqlStore
from flowkeeper.store.connector import WriteBody
from flowkeeper.store.group_commit import GroupCommit
from flowkeeper.store.tables import UTCDateTime
from flowkeeper.store.urls import DatabaseUrl

#: Upper bound on reader connections: each aiosqlite connection is a thread.
MAX_READERS = 8

_T = TypeVar("_T")

#: Execution option marking a connection whose writes are single statements (no BEGIN).
_SINGLE_STATEMENT = "flowkeeper_single_statement"


class SqliteStore(SqlStore):
    """The :class:`~flowkeeper.store.port.Store` on a SQLite file (or in memory)."""

    def __init__(self, url: DatabaseUrl, **options: Any) -> None:
        super().__init__(url, **options)
        self._lock = asyncio.Lock()
        self._batches = GroupCommit(self._connect_writer, self._lock, self._translated)

    async def _write(self, operation: str, body: WriteBody[_T], *, autocommit: bool = False) -> _T:
        if self._writer is None:
            await self.open()
        # Without a savepoint when the body writes with one statement (see _write).
        return await self._batches.submit(operation, body, isolated=not autocommit)

    async def _connect_writer(self) -> AsyncConnection:
        if self._writer is None:
            raise StoreUnavailable("the store was closed")
        return await self._writer.connect()

    async def close(self) -> None:
        """Finish the queued writes, then dispose of the connections; the store may be opened again."""
        await self._batches.close()
        await super().close()

    def _pragmas(self, *, writer: bool) -> list[str]:
        pragmas = [
            f"PRAGMA busy_timeout = {int(self.command_timeout * 1000)}",
            "PRAGMA foreign_keys = ON",
            "PRAGMA synchronous = NORMAL",
        ]
        if writer and not self._db_url.is_memory:
            pragmas.insert(0, "PRAGMA journal_mode = WAL")
        if not writer:
            pragmas.append("PRAGMA query_only = ON")  # a read path can never write by mistake
        return pragmas

    def _engine(self, *, writer: bool, **kwargs: Any) -> AsyncEngine:
        engine = create_async_engine(self._db_url.sqlalchemy_url, echo=self.echo, **kwargs)
        pragmas = self._pragmas(writer=writer)

        @event.listens_for(engine.sync_engine, "do_connect")
        def _driver(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
            # The dialect connects through this instead of aiosqlite.connect (same
            # arguments): our connection class, one thread hop per statement.
            cparams["async_creator_fn"] = sqlite_driver.connect

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
            # Take transaction control away from the sqlite3 module (which would open
            # deferred transactions behind our back); we emit BEGIN ourselves.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in pragmas:
                cursor.execute(pragma)
            cursor.close()

        if writer:

            @event.listens_for(engine.sync_engine, "begin")
            def _on_begin(conn: Any) -> None:
                # IMMEDIATE: take the write lock up front. A deferred transaction that
                # reads first and writes later can fail with SQLITE_BUSY at once (no
                # busy wait) when another process wrote in between.
                if not conn.get_execution_options().get(_SINGLE_STATEMENT):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _create_engines(self) -> tuple[AsyncEngine, AsyncEngine, AsyncEngine]:
        if self._db_url.is_memory:
            # One connection is the whole database; reads take the writer lock too.
            engine = self._engine(writer=True, poolclass=StaticPool)
            single = engine.execution_options(**{_SINGLE_STATEMENT: True})
            return engine, single, single
        writer = self._engine(writer=True, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)
        # For Connector._transaction(autocommit=True); the store's own writes go
        # through group commit (_write), where single statements join a batch.
        single = writer.execution_options(**{_SINGLE_STATEMENT: True})
        reader = self._engine(
            writer=False,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=max(1, min(self.max_pool_size, MAX_READERS)),
            max_overflow=0,
            pool_timeout=self.connect_timeout,
        )
        return writer, single, reader

    def _write_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._lock  # also held by each write batch while it runs

    def _read_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._lock if self._db_url.is_memory else contextlib.nullcontext()

    def _now_sql(self) -> ColumnElement[Any]:
        return bindparam("p_now", type_=UTCDateTime())

    def _lease_until_sql(self) -> ColumnElement[Any]:
        return bindparam("p_lease_until", type_=UTCDateTime())

    def _clock(self, lease: timedelta | None = None) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {"p_now": now} if lease is None else {"p_now": now, "p_lease_until": now + lease}

    async def _read_clock(self, conn: AsyncConnection) -> datetime:
        return datetime.now(UTC)

    def _insert_or_ignore(self, table: Table) -> Insert:
        return sqlite_insert(table).on_conflict_do_nothing()
