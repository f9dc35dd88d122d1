"""A worker loop: claim runnable instances, fire due timers, sleep until there is work.

This is the in-process loop that ``flowkeeper run`` uses; the service's dispatcher is
the same loop without the timers (its timer service fires them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from flowkeeper.records import InstanceRecord
from flowkeeper.runtime.engine import Engine


class Worker:
    """Claims and runs instances with at most ``concurrency`` runs at once."""

    def __init__(
        self, engine: Engine, *, concurrency: int = 64, poll_interval: float = 1.0, fire_timers: bool = True
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        #: False where a timer service of its own fires them (the service host).
        self.fires_timers = fire_timers
        self._running: set[asyncio.Task[object]] = set()

    async def run_pending(self) -> int:
        """Claim what fits in the free slots and start running it; returns how many."""
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        claimed = await self.engine.store.claim_instances(self.engine.owner, self.engine.lease, free)
        for record in claimed:
            task = self.engine.spawn_claimed(record)
            self._running.add(task)
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._running.discard(task)
        self.engine.notify_work()

    async def fire_timers(self, limit: int = 100) -> int:
        """Fire due timers (database clock); their instances become runnable."""
        fired = await self.engine.store.fire_due_timers(limit)
        if fired:
            self.engine.notify_work()
            self.engine.poke(t.instance_id for t in fired)
        return len(fired)

    async def run_until(self, done: Callable[[], Awaitable[bool]], limit: float | None = None) -> bool:
        """Work until ``await done()`` holds (True) or ``limit`` seconds pass (False)."""
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        engine = self.engine
        while True:
            engine.work_available.clear()
            # Read the next due time first: firing is a write transaction, not worth a
            # pass that finds nothing due.
            until_due = await self._seconds_until_due() if self.fires_timers else None
            if until_due is not None and until_due <= 0:
                await self.fire_timers()
                until_due = await self._seconds_until_due()
            await self.run_pending()
            if await done():
                return True
            now = loop.time()
            if deadline is not None and now >= deadline:
                return False
            wait = self.poll_interval
            if until_due is not None:
                wait = min(wait, max(until_due, 0.0))
            if deadline is not None:
                wait = min(wait, deadline - now)
            if wait > 0 and not engine.work_available.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(engine.work_available.wait(), wait)

    async def _seconds_until_due(self) -> float | None:
        """Seconds until the next timer is due (database clock), None when there is none."""
        store = self.engine.store
        due = await store.next_timer_due()
        if due is None:
            return None
        return (due - await store.now()) / timedelta(seconds=1)

    async def drain(self) -> None:
        """Wait for the runs this worker started."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)


async def run_to_end(
    engine: Engine,
    instance_id: str,
    *,
    limit: float | None = None,
    stop_when_idle: bool = False,
    concurrency: int = 64,
    poll_interval: float = 1.0,
) -> InstanceRecord:
    """Work (claim, run, fire timers) until the instance ends or ``limit`` seconds pass.

    ``stop_when_idle`` is for a private database, where nothing from outside can resume
    a suspended instance: once no run is going, nothing is claimable and no timer is
    pending, waiting longer is pointless.
    """
    finished = asyncio.ensure_future(engine.wait_for(instance_id))
    worker = Worker(engine, concurrency=concurrency, poll_interval=poll_interval)

    async def done() -> bool:
        if finished.done():
            return True
        return stop_when_idle and engine.idle() and await engine.store.next_timer_due() is None

    try:
        await worker.run_until(done, limit=limit)
    finally:
        finished.cancel()
    await engine.drain()
    return await engine.store.get_instance(instance_id)
