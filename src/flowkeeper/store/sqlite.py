"""SQLite adapter: aiosqlite under SQLAlchemy's async engine, for embedded use and tests.

One writer connection, with writes serialised in-process by an asyncio lock and each
write transaction opened ``BEGIN IMMEDIATE`` (so it never has to upgrade a read lock,
the classic source of ``database is locked``). Readers use their own connections; WAL
mode lets them read while the writer writes. The clock is Python's: SQLite runs in this
process, on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Insert, Table, bindparam, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, StaticPool

from flowkeeper.store.base import SqlStore
from flowkeeper.store.tables import UTCDateTime
from flowkeeper.store.urls import DatabaseUrl

#: Upper bound on reader connections: each aiosqlite connection is a thread.
MAX_READERS = 8

#: Execution option marking a connection whose writes are single statements (no BEGIN).
_SINGLE_STATEMENT = "flowkeeper_single_statement"


class SqliteStore(SqlStore):
    """The :class:`~flowkeeper.store.port.Store` on a SQLite file (or in memory)."""

    def __init__(self, url: DatabaseUrl, **options: Any) -> None:
        super().__init__(url, **options)
        self._lock = asyncio.Lock()

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
        # A write that is one statement is atomic by itself: skipping BEGIN/COMMIT
        # spares two of the handful of thread hops each aiosqlite call costs.
        single = writer.execution_options(**{_SINGLE_STATEMENT: True})
        readers = max(1, min(self.max_pool_size, MAX_READERS))
        reader = self._engine(
            writer=False,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=min(max(self.min_pool_size, 1), readers),
            max_overflow=readers - min(max(self.min_pool_size, 1), readers),
            pool_timeout=self.connect_timeout,
        )
        return writer, single, reader

    def _write_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._lock

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
