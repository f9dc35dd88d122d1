"""Pipelined single-statement writes on PostgreSQL: concurrent executions of one hot
statement share one round trip, straight through asyncpg.

Why. A checkpoint on PostgreSQL is one statement (the guarded UPDATE with its log rows
and bookmark deletes fused in, see ``postgres._fuse_log_insert``), yet executing it
through SQLAlchemy cost ~0.5 ms of CPU on this machine: compiling from the cache,
processing every bind value, a greenlet switch each way and the result processing
(``py-spy`` over ``bench/scale.py``'s timers: 63% of the service's CPU while 1,000
timers fired in one second went to checkpoints). When many instances resume together
(a second full of due timers, a burst of events) that CPU, not the database, decides
how late they run.

How.

- The statement is compiled once for the connection's dialect; each execution binds its
  values with SQLAlchemy's own bind processors (so JSON, ``UTCDateTime`` and the array
  types encode exactly as through SQLAlchemy) and its row goes through the table's
  result processors.
- Executions requested in the same turn of the event loop are sent together with
  asyncpg's ``fetchmany``: one pooled connection, one Bind/Execute per execution, one
  Sync. That is one round trip and one implicit transaction: all of them commit or none
  does. Each execution matches its own row (its ``key`` column) or none; a guard that
  matches no row writes nothing and returns nothing, and does not disturb the others.
- A batch that the server rejects for a statement error (a constraint, a bad value)
  committed nothing: each of its executions reports :data:`RETRY_ALONE`, and the caller
  runs it on its own through SQLAlchemy, where it fails (or succeeds) by itself with the
  usual error. A lost connection fails every execution of the batch with the store's
  error, as it would have failed each alone; the connection is invalidated.
- A batch never holds two executions with the same key (an instance has at most one
  checkpoint in flight; were there two, the second goes in the next batch), so each
  row is matched to its caller without ambiguity.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import ClauseElement, Executable, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from flowkeeper.errors import FlowkeeperError, StoreUnavailable


class RetryAlone:
    """The type of :data:`RETRY_ALONE`."""


#: Returned instead of a row when the execution must be retried alone (see the module doc).
RETRY_ALONE: Final = RetryAlone()

#: Upper bound on the executions sharing one round trip (bounds the rows a batch locks).
MAX_BATCH = 64

#: Batches of one statement out at once; executions requested meanwhile wait for the
#: next one, so that batches grow with the load (a lone execution goes at once).
MAX_IN_FLIGHT = 2


class Row:
    """A result row as ``rows.instance`` and friends read it (``row._mapping[name]``)."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._mapping = mapping


@dataclass(eq=False)
class _Batch:
    executions: list[_Execution] = field(default_factory=list)
    keys: set[Any] = field(default_factory=set)


@dataclass(eq=False)
class _Execution:
    key: Any
    args: tuple[Any, ...]
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


#: Turns a driver error raised during the operation into the store's error to raise
#: (and disposes of dead pooled connections, as the connector does for its own writes).
FailureHandler = Callable[[Exception, str], Coroutine[Any, Any, FlowkeeperError]]


class BatchedStatement:
    """One statement whose concurrent executions are pipelined (see the module doc)."""

    def __init__(
        self,
        statement: Executable,
        *,
        engine: AsyncEngine,
        table: Table,
        key: tuple[str, str],
        operation: str,
        on_failure: FailureHandler,
        timeout: float | None,
    ) -> None:
        dialect: Dialect = engine.dialect
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        names = compiled.positiontup
        if names is None:
            raise ValueError("BatchedStatement needs a dialect with positional parameters")
        self._sql = compiled.string
        self.engine = engine
        self._key_param, self._key_column = key
        self._operation = operation
        self._on_failure = on_failure
        self._timeout = timeout
        # Per positional parameter: (name, its constant value or None if the caller
        # gives it, SQLAlchemy's bind processor or None).
        self._binds: list[tuple[str, bool, Any, Callable[[Any], Any] | None]] = []
        for name in names:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            given = bind.required
            self._binds.append((name, given, None if given else bind.effective_value, processor))
        self._results: list[tuple[str, Callable[[Any], Any] | None]] = [
            (column.name, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in table.columns
        ]
        self._queue: deque[_Batch] = deque()  # batches not sent yet, oldest first
        self._in_flight = 0
        self._flush_soon = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, given, constant, processor in self._binds:
            value = params[name] if given else constant
            values.append(value if processor is None else processor(value))
        return tuple(values)

    async def fetch(self, params: Mapping[str, Any]) -> Row | RetryAlone | None:
        """Execute with ``params``: the row it returned, None (it matched nothing) or
        :data:`RETRY_ALONE`. Raises the store's error when the database is unreachable."""
        execution = _Execution(params[self._key_param], self._arguments(params))
        batch = self._queue[-1] if self._queue else None
        if batch is None or execution.key in batch.keys or len(batch.executions) >= MAX_BATCH:
            batch = _Batch()
            self._queue.append(batch)
        batch.executions.append(execution)
        batch.keys.add(execution.key)
        self._schedule_flush()
        # Shielded: once sent, the execution's outcome no longer depends on its caller
        # (like a statement cancelled in flight, it may commit).
        return await asyncio.shield(execution.future)

    def _schedule_flush(self) -> None:
        # At the end of this turn of the event loop, so that every execution requested
        # in it joins; not while MAX_IN_FLIGHT batches are out: newcomers gather meanwhile.
        if not self._flush_soon and self._in_flight < MAX_IN_FLIGHT and self._queue:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        while self._queue and self._in_flight < MAX_IN_FLIGHT:
            batch = self._queue.popleft()
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch.executions))
            self._tasks.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        if task.cancelled():
            # Only the event loop shutting down cancels a batch: nothing queued goes out now.
            for batch in self._queue:
                for execution in batch.executions:
                    execution.future.cancel()
            self._queue.clear()
            return
        self._schedule_flush()

    async def _send(self, batch: list[_Execution]) -> None:
        try:
            records = await self._execute([e.args for e in batch])
        except asyncio.CancelledError:
            for execution in batch:
                execution.future.cancel()
            raise
        except Exception as error:
            for execution in batch:
                if not execution.future.done():
                    execution.future.set_exception(error)
            return
        if records is None:
            for execution in batch:
                if not execution.future.done():
                    execution.future.set_result(RETRY_ALONE)
            return
        found = {}
        for record in records:
            mapping = {
                name: record[name] if processor is None else processor(record[name])
                for name, processor in self._results
            }
            found[mapping[self._key_column]] = Row(mapping)
        for execution in batch:
            if not execution.future.done():
                execution.future.set_result(found.get(execution.key))

    async def _execute(self, args: list[tuple[Any, ...]]) -> list[Any] | None:
        """The rows, or None when the batch failed on a statement error (nothing committed)."""
        try:
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                try:
                    records: list[Any] = await driver.fetchmany(self._sql, args, timeout=self._timeout)
                except Exception as exc:
                    error = await self._on_failure(exc, self._operation)
                    if not isinstance(error, StoreUnavailable):
                        return None
                    with contextlib.suppress(Exception):
                        await conn.invalidate()
                    raise error from exc
                return records
        except FlowkeeperError:
            raise
        except Exception as exc:  # taking a pooled connection failed
            raise await self._on_failure(exc, self._operation) from exc
