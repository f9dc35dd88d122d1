"""A leaner SQLite driver connection: one thread hop per statement, under aiosqlite.

Every aiosqlite call is a hop: a queue put that wakes the connection's thread, the
call, then a callback that wakes the event loop. SQLAlchemy's aiosqlite adapter spends
four of them on a statement that returns rows (make a cursor, execute, fetch, close),
three on one that does not, one each on COMMIT and on the ROLLBACK with which the pool
resets a returned connection, and a full statement on ``BEGIN``: twelve for a write
transaction of two statements.

:class:`DriverConnection` is an :class:`aiosqlite.Connection` (same thread, same queue,
so SQLAlchemy's adapter and dialect are used unchanged) whose cursors execute, fetch
every row and close in one hop. Statements that return nothing and whose outcome the
caller does not wait for (``BEGIN``, ``SAVEPOINT``, ``RELEASE``) are deferred and run at
the front of the next hop, and COMMIT and ROLLBACK cost nothing when no transaction is
open. A write transaction of two statements becomes three hops from the event loop, and
none at all on the connection's own thread, where statements run in place: that is
where :mod:`flowkeeper.store.group_commit` runs whole batches of write transactions,
one hop each.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

import aiosqlite

_T = TypeVar("_T")

#: Statements deferred to the next hop: transaction control, which returns nothing and
#: fails only when the connection itself is unusable (then the next statement fails too).
_DEFERRABLE = ("BEGIN", "SAVEPOINT", "RELEASE")

_Rows = list[Any]
_Description = Sequence[tuple[Any, ...]] | None


class DriverConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements each cost one hop to its thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        worker = getattr(self, "_thread", None)
        # Before aiosqlite 0.22 the connection was itself the thread.
        self._worker = worker if isinstance(worker, threading.Thread) else cast(threading.Thread, self)
        self._worker.daemon = True  # as SQLAlchemy's dialect does for aiosqlite's own
        self._pending: list[str] = []
        # Whether the connection was in a transaction after the last hop (a deferred
        # BEGIN not yet sent does not count: rolling it back is dropping it).
        self._in_transaction = False
        self._stop_sent = False

    # -- closing -------------------------------------------------------------------------------

    def stop(self) -> asyncio.Future[Any] | None:
        """aiosqlite's ``stop``, once. Its thread ends at the first stop: the future of a
        second one would never be answered, and whoever awaits it (aiosqlite's own
        ``close``, in a ``finally``, even when cancelled) would wait forever."""
        if self._stop_sent:
            return None
        self._stop_sent = True
        stop: Callable[[], asyncio.Future[Any] | None] | None = getattr(super(), "stop", None)
        return None if stop is None else stop()

    async def close(self) -> None:
        """Close the connection and end its thread; nothing to do once stopped (SQLAlchemy
        stops a connection it gives up on, then may close it too)."""
        if self._stop_sent:
            return
        await super().close()

    # -- the hop -------------------------------------------------------------------------------

    def defer(self, sql: str) -> None:
        """Run ``sql`` (no parameters, no result) at the front of the next hop."""
        self._pending.append(sql)

    @property
    def transaction_open(self) -> bool:
        """Whether a transaction is open or about to be (a deferred statement is waiting)."""
        return self._in_transaction or bool(self._pending)

    async def perform(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """``call(connection)`` after the deferred statements, in the connection's thread.

        From the event loop that is one hop. On the connection's own thread (a function
        sent there with :meth:`in_thread`) it runs in place and the coroutine completes
        without ever suspending, which is what lets a whole transaction written with
        ``await`` run there in one hop (see :mod:`flowkeeper.store.group_commit`).
        """
        if threading.get_ident() == self._worker.ident:
            return self.perform_here(call)
        pending, self._pending = self._pending, []
        try:
            ok, value, in_transaction = await self._execute(_hop, self._conn, pending, call)  # type: ignore[no-untyped-call]
        except BaseException:
            # Cancelled while the thread works, or the connection is gone: assume the
            # worst, so the next ROLLBACK is really sent.
            self._in_transaction = True
            raise
        self._in_transaction = in_transaction
        if not ok:
            raise value
        result: _T = value
        return result

    def perform_here(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """:meth:`perform` on the connection's own thread, synchronously."""
        assert threading.get_ident() == self._worker.ident, "only on the connection's thread"
        pending, self._pending = self._pending, []
        ok, value, self._in_transaction = _hop(self._conn, pending, call)
        if not ok:
            raise value
        result: _T = value
        return result

    async def in_thread(self, function: Callable[[], _T]) -> _T:
        """``function()`` on the connection's thread: one hop, whatever it does there."""
        result: _T = await self._execute(function)  # type: ignore[no-untyped-call]
        return result

    # -- the aiosqlite surface SQLAlchemy's adapter uses -----------------------------------------

    def cursor(self) -> DriverCursor:  # type: ignore[override]
        """A cursor; making it costs no hop (the adapter enters it with ``async with``)."""
        return DriverCursor(self)

    async def commit(self) -> None:
        if self.transaction_open:
            await self.perform(_commit)

    async def rollback(self) -> None:
        if not self._in_transaction:
            self._pending.clear()  # nothing was sent: dropping it is the rollback
            return
        self._pending.clear()
        await self.perform(_rollback)


class DriverCursor:
    """A DB-API cursor over :class:`DriverConnection`: each execute is one hop, rows come buffered."""

    arraysize = 1

    def __init__(self, connection: DriverConnection) -> None:
        self._connection = connection
        self.description: _Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: _Rows = []

    async def __aenter__(self) -> DriverCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = None) -> DriverCursor:
        if not parameters and sql.lstrip().upper().startswith(_DEFERRABLE):
            self._connection.defer(sql)
            self.description, self._rows, self.rowcount, self.lastrowid = None, [], -1, None
            return self
        call = partial(_execute, sql, () if parameters is None else parameters)
        self.description, self._rows, self.rowcount, self.lastrowid = await self._connection.perform(call)
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> DriverCursor:
        self.rowcount = await self._connection.perform(partial(_executemany, sql, list(seq_of_parameters)))
        self.description, self._rows, self.lastrowid = None, [], None
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> _Rows:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchall(self) -> _Rows:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


# -- run in the connection's thread ------------------------------------------------------------


def _hop(
    conn: sqlite3.Connection, pending: list[str], call: Callable[[sqlite3.Connection], Any]
) -> tuple[bool, Any, bool]:
    """Deferred statements, then ``call``; (ok, result or exception, in a transaction after)."""
    try:
        for sql in pending:
            conn.execute(sql).close()
        return True, call(conn), conn.in_transaction
    except Exception as exc:
        return False, exc, conn.in_transaction


_Executed = tuple[_Description, _Rows, int, int | None]


def _execute(sql: str, parameters: Any, conn: sqlite3.Connection) -> _Executed:
    cursor = conn.execute(sql, parameters)
    try:
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _executemany(sql: str, seq_of_parameters: list[Any], conn: sqlite3.Connection) -> int:
    cursor = conn.executemany(sql, seq_of_parameters)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def _commit(conn: sqlite3.Connection) -> None:
    conn.commit()


def _rollback(conn: sqlite3.Connection) -> None:
    conn.rollback()


def connect(database: str, **kwargs: Any) -> DriverConnection:
    """Like :func:`aiosqlite.connect`: await the result to open the connection."""
    return DriverConnection(partial(sqlite3.connect, database, **kwargs))
