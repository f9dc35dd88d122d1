"""Connections: engines, transactions, life cycle and the dialect hooks.

:class:`Connector` is the half of a store that knows how to talk to one database (the
SQLite and PostgreSQL adapters fill in its hooks); :class:`~flowkeeper.store.base.SqlStore`
is the half that knows what to say. Every database error leaves a connector as a
:class:`~flowkeeper.errors.StoreError` (see :mod:`flowkeeper.store.failures`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Executable, Insert, Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowkeeper.errors import FlowkeeperError
from flowkeeper.store.failures import ErrorTranslator
from flowkeeper.store.urls import DatabaseUrl

# Our own errors and caller mistakes pass through untranslated.
_PASSTHROUGH = (FlowkeeperError, ValueError, TypeError)


class Connector:
    """Engines and transactions for one database URL; subclasses supply the dialect hooks."""

    #: Whether ``SELECT ... FOR UPDATE`` means anything (PostgreSQL) or writers are
    #: serialised anyway (SQLite), in which case the explicit row locks are skipped.
    locks_rows: ClassVar[bool] = False

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

    # -- dialect hooks -------------------------------------------------------------------------

    def _create_engines(self) -> tuple[AsyncEngine, AsyncEngine, AsyncEngine]:
        """(transactional writer, autocommit writer, reader) engines; they may share a pool."""
        raise NotImplementedError

    def _now_sql(self) -> ColumnElement[Any]:
        """The clock as SQL (``now()`` or a bound ``p_now``)."""
        raise NotImplementedError

    def _lease_until_sql(self) -> ColumnElement[Any]:
        """The clock plus a lease as SQL (binds ``p_lease`` or ``p_lease_until``)."""
        raise NotImplementedError

    def _clock(self, lease: timedelta | None = None) -> dict[str, Any]:
        """Bind values the clock expressions need for one statement."""
        raise NotImplementedError

    async def _read_clock(self, conn: AsyncConnection) -> datetime:
        """The database clock, read through ``conn``."""
        raise NotImplementedError

    def _insert_or_ignore(self, table: Table) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` for ``table``."""
        raise NotImplementedError

    def _fused_checkpoint_sql(self, release_lease: bool) -> Executable | None:
        """One statement doing the checkpoint UPDATE and inserting log rows from
        ``rows.log_columns`` arrays, returning the instance row; None when the dialect
        cannot (then two statements in a transaction do it)."""
        return None

    def _write_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around every write (SQLite: the in-process writer lock)."""
        return contextlib.nullcontext()

    def _read_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around every read (in-memory SQLite shares one connection)."""
        return contextlib.nullcontext()

    # -- connections ---------------------------------------------------------------------------

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
            raise self._errors.translate(exc, operation) from exc

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
            raise self._errors.translate(exc, operation) from exc

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the engines and make one connection, so a bad URL fails here."""
        if self._writer is not None:
            return
        self._writer, self._autocommit, self._reader = self._create_engines()
        try:
            async with self._write_guard(), self._writer.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            await self.close()
            raise self._errors.translate(exc, "open") from exc

    async def close(self) -> None:
        """Dispose of the pools; the store may be opened again."""
        engines = {id(e): e for e in (self._writer, self._autocommit, self._reader) if e is not None}
        self._writer = self._autocommit = self._reader = None
        for engine in engines.values():
            await engine.dispose()

    async def ping(self) -> None:
        """One cheap round trip; ``StoreUnavailable`` when the database cannot be reached."""
        async with self._reading("ping") as conn:
            await conn.exec_driver_sql("SELECT 1")
