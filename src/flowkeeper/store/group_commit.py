"""Group commit for SQLite's single writer: queued write transactions share one COMMIT,
and a whole batch of them costs one hop to the writer connection's thread.

Why. SQLite has one writer at a time, so in-process writes are serialised. Each await on
the aiosqlite connection is a hop to its thread and back (a queue put, a thread wake-up,
an event-loop wake-up: ~0.1 ms on an idle machine, several times that on a busy loop),
and hops are what a serialised writer spends its time on. Making each statement one hop
(:mod:`flowkeeper.store.sqlite_driver`) still leaves a checkpoint at three (the guarded
UPDATE, the log INSERT, the COMMIT), all on the critical path of every other writer.
Measured with ``bench/engine.py`` (64 concurrent instances, two write transactions
each): twelve hops per transaction through SQLAlchemy's aiosqlite adapter gave ~300
instances/s; one hop per statement ~320; one hop per batch (here, ~40 transactions a
batch under that load) ~900, above PostgreSQL on the same machine.

How.

- A write is a *body*: ``async def body(conn)`` awaiting nothing but ``conn``, the store's
  statements executed through SQLAlchemy's ``AsyncConnection`` as everywhere else (the
  same code the PostgreSQL adapter runs inside its own transactions). Callers await
  :meth:`GroupCommit.submit`: async all the way down.
- Bodies queue in arrival order. A flusher task takes up to ``max_batch`` of them and
  sends the batch to the writer connection's thread in one hop. There, ``BEGIN
  IMMEDIATE``, the bodies one after another and ``COMMIT`` run to completion without
  suspending: the driver connection answers each statement in place on its own thread,
  so every ``await`` inside a body completes at once (:func:`drive`). While a batch runs,
  newcomers queue and the next batch takes them: batches grow with the load, and a lone
  writer waits for nobody.
- Each body runs inside a ``SAVEPOINT`` (``isolated``): a body that raises is rolled
  back to it, alone, and gets its exception; the others go on. A body whose only write
  is one statement (``isolated=False``: a failing statement undoes itself, and a
  guarded checkpoint UPDATE that matches nothing has written nothing) runs without one.
- Outcomes are handed out only after the COMMIT succeeded: the runtime performs outside
  effects once a write returns, so a caller must never see success for data that could
  still be lost. A failed COMMIT, or an error that ends the transaction (SQLite rolls
  the whole transaction back on I/O errors, a full disk and the like), fails every body
  of the batch with that error (the body whose error it was gets its own exception).
- A body runs in the caller's ``contextvars`` context, as it would have in its task.
- A caller that is cancelled before its body started is skipped; once started, the
  body is rolled back if it is isolated and the cancellation was seen in time (like a
  transaction cancelled before its COMMIT), or commits with the batch otherwise (like
  a transaction cancelled during its COMMIT): cancellation leaves the outcome open.
- :meth:`GroupCommit.close` finishes the queued writes and refuses new ones meanwhile.

Writes of the batch see each other's uncommitted rows, as consecutive transactions
would see committed ones; a body that failed on a batch-mate's write (a stale
checkpoint, an id taken) reports it after that write committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from flowkeeper.errors import StoreError, StoreUnavailable
from flowkeeper.store.sqlite_driver import DriverConnection

_T = TypeVar("_T")

#: A write: awaits nothing but the connection it is given.
Body = Callable[[AsyncConnection], Coroutine[Any, Any, _T]]

#: Upper bound on the bodies sharing one transaction (keeps the write lock, which other
#: processes on the same file wait for, held for a bounded time).
MAX_BATCH = 64


class BodySuspended(RuntimeError):
    """A body awaited something other than the connection (a programming error)."""


def drive(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to its end here and now; it must never suspend.

    On the writer connection's thread every database await completes in place, so a
    body's coroutine finishes within one ``send``. Anything that would suspend (a
    sleep, a lock, a future of the event loop) is refused: there is no loop here to
    resume it.
    """
    try:
        awaited = coroutine.send(None)
    except StopIteration as stop:
        result: _T = stop.value
        return result
    coroutine.close()
    raise BodySuspended(f"a write body awaited {awaited!r}; it may await only its connection")


async def _awaited(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


@dataclass(eq=False)
class _Job:
    operation: str
    body: Body[Any]
    isolated: bool
    future: asyncio.Future[Any]
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    #: In a batch already (no longer in the queue).
    taken: bool = False
    #: The caller gave up (set on the event loop, read on the writer's thread).
    cancelled: bool = False


#: Per body: None (skipped: its caller was cancelled first), or (True, result) or (False, exception).
_Outcome = tuple[bool, Any] | None


class GroupCommit:
    """The write queue of one SQLite store: FIFO, batched, one hop per batch.

    ``connect`` checks the writer connection out (it goes back after each batch);
    ``lock`` is held while a batch runs, so whoever else uses the writer connection
    from the event loop (migrations, an in-memory database's readers) takes turns with
    batches; ``translate`` turns an exception into what a caller should see for it.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[AsyncConnection]],
        lock: asyncio.Lock,
        translate: Callable[[BaseException, str], BaseException],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._connect = connect
        self._lock = lock
        self._translate = translate
        self.max_batch = max_batch
        self._queue: deque[_Job] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        #: Figures for tests and benchmarks: batches run and bodies in them.
        self.batches = 0
        self.bodies = 0

    async def submit(self, operation: str, body: Body[_T], *, isolated: bool = True) -> _T:
        """Run ``body`` in a batch; its result once the batch has committed.

        ``isolated``: roll the body back alone when it raises (a SAVEPOINT); without
        it, the body must write with at most one statement and fail only before or in it.
        """
        if self._closing:
            raise StoreUnavailable(f"{operation}: the store is closing")
        loop = asyncio.get_running_loop()
        if self._flusher is not None and not self._flusher.done() and self._flusher.get_loop() is not loop:
            raise RuntimeError(f"{operation}: the store's writes are being served on another event loop")
        job = _Job(operation, body, isolated, loop.create_future())
        self._queue.append(job)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="flowkeeper-sqlite-group-commit")
        try:
            result: _T = await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            if not job.taken:
                self._queue.remove(job)
            raise
        return result

    async def close(self) -> None:
        """Finish the queued writes (new ones are refused meanwhile); then idle, reusable."""
        self._closing = True
        try:
            while self._flusher is not None:
                await asyncio.wait({self._flusher})  # never raises the flusher's own error
        finally:
            self._closing = False

    # -- the flusher (event loop side) ---------------------------------------------------------

    async def _flush(self) -> None:
        jobs: list[_Job] = []
        try:
            while self._queue:
                jobs = []
                while self._queue and len(jobs) < self.max_batch:
                    job = self._queue.popleft()
                    job.taken = True
                    jobs.append(job)
                await self._run(jobs)
                jobs = []
        except BaseException as exc:
            # The flusher itself was cancelled (the event loop is shutting down): the
            # batch in flight has an unknown outcome and the queue will not be served.
            failed = [*jobs, *self._queue]
            self._queue.clear()
            error = StoreUnavailable("write interrupted: the store's writer stopped")
            error.__cause__ = exc
            for job in failed:
                if not job.future.done():
                    job.future.set_exception(error)
            raise
        finally:
            self._flusher = None

    async def _run(self, jobs: list[_Job]) -> None:
        async with self._lock:
            try:
                conn = await self._connect()
            except Exception as exc:
                self._settle(jobs, [], exc)
                return
            try:
                driver = (await conn.get_raw_connection()).driver_connection
                assert isinstance(driver, DriverConnection)
                outcomes, failure = await driver.in_thread(lambda: _run_batch(conn, driver, jobs))
            except Exception as exc:  # the connection is unusable
                outcomes, failure = [], exc
            finally:
                await conn.close()
        self.batches += 1
        self.bodies += len(jobs)
        self._settle(jobs, outcomes, failure)

    def _settle(self, jobs: list[_Job], outcomes: list[_Outcome], failure: BaseException | None) -> None:
        for n, job in enumerate(jobs):
            if job.future.done():
                continue
            outcome = outcomes[n] if n < len(outcomes) else None
            if failure is not None and (outcome is None or outcome[0] or outcome[1] is not failure):
                # The batch failed (its COMMIT, or a body's error ended the transaction):
                # every member gets the error, the body that caused it its own exception.
                job.future.set_exception(self._batch_error(failure, job.operation))
            elif outcome is None:
                job.future.cancel()
            elif outcome[0]:
                job.future.set_result(outcome[1])
            else:
                job.future.set_exception(self._translate(outcome[1], job.operation))

    def _batch_error(self, failure: BaseException, operation: str) -> BaseException:
        """A fresh exception per member (one object raised in many tasks would share a traceback)."""
        error = self._translate(failure, operation)
        if error is failure:  # passed through untranslated: another body's own exception
            error = StoreError(f"{operation}: the write was lost with its batch ({type(failure).__name__})")
            error.__cause__ = failure
        return error


# -- the batch (on the writer connection's thread) ----------------------------------------------


class _TransactionLost(Exception):
    """A body's failure (``error``) ended the whole transaction; the batch cannot commit."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _run_batch(
    conn: AsyncConnection, driver: DriverConnection, jobs: list[_Job]
) -> tuple[list[_Outcome], BaseException | None]:
    """``BEGIN IMMEDIATE``, every body, ``COMMIT``: (one outcome per body, or the batch's failure)."""
    outcomes: list[_Outcome] = [None] * len(jobs)
    try:
        drive(_awaited(conn.begin()))  # BEGIN IMMEDIATE (the writer engine's begin hook)
        for n, job in enumerate(jobs):
            if job.cancelled:
                continue
            try:
                outcomes[n] = _run_body(conn, driver, job, f"flowkeeper_write_{n}")
            except _TransactionLost as lost:
                outcomes[n] = (False, lost.error)
                raise
        drive(conn.commit())
    except Exception as exc:
        with contextlib.suppress(Exception):  # the batch's own error is the one to report
            drive(conn.rollback())
        return outcomes, exc.error if isinstance(exc, _TransactionLost) else exc
    return outcomes, None


def _run_body(conn: AsyncConnection, driver: DriverConnection, job: _Job, savepoint: str) -> _Outcome:
    if job.isolated:
        driver.defer(f"SAVEPOINT {savepoint}")
    try:
        value = job.context.run(drive, job.body(conn))
    except Exception as exc:
        if job.isolated:
            try:
                driver.perform_here(lambda c: _undo(c, savepoint))
            except Exception:  # no savepoint left to return to: the transaction is gone
                raise _TransactionLost(exc) from exc
        elif not driver.transaction_open:
            raise _TransactionLost(exc) from exc
        return False, exc
    if job.isolated:
        if job.cancelled:  # its caller gave up meanwhile: as if cancelled before COMMIT
            driver.perform_here(lambda c: _undo(c, savepoint))
            return None
        driver.defer(f"RELEASE {savepoint}")
    return True, value


def _undo(conn: Any, savepoint: str) -> None:
    conn.execute(f"ROLLBACK TO {savepoint}").close()
    conn.execute(f"RELEASE {savepoint}").close()
