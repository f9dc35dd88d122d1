"""Engine benchmark: a 3-task workflow (set -> call a registered function -> set).

Measures, on SQLite and on PostgreSQL:
- sequential: one instance at a time, start to completion;
- concurrent: 64 clients starting and awaiting instances at once;
and for each: completed instances/s, p50/p99 start-to-completion latency, and commits
(transactions that write) per instance. Also the interpreter alone, in memory.

    python bench/engine.py [--count N] [--concurrency C] [--postgres URL] [--only sqlite|postgres|memory]

PostgreSQL defaults to FLOWKEEPER_BENCH_POSTGRES_URL or FLOWKEEPER_TEST_POSTGRES_URL;
a database ``flowkeeper_bench`` is created (dropped first) on that server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.engine import Interpreter, Program
from flowkeeper.engine.effects import EffectResult, FunctionCall
from flowkeeper.records import InstanceRecord
from flowkeeper.runtime import CheckpointInput, Engine, Interceptor
from flowkeeper.runtime.ids import new_instance_id
from flowkeeper.store import Store, create_store

DEFINITION = """
document: {dsl: '1.0.3', namespace: bench, name: three-steps, version: '1.0.0'}
do:
  - prepare:
      set:
        order: ${ .order }
        amount: ${ .amount * 2 }
  - price:
      call: add_tax
      with:
        amount: ${ .amount }
  - finish:
      set:
        total: ${ .total }
        done: true
"""


def add_tax(amount: float) -> dict[str, float]:
    return {"total": round(amount * 1.2, 2)}


class Meter(Interceptor):
    """Counts writing transactions and resolves a future when an instance finishes."""

    def __init__(self) -> None:
        self.commits = 0
        self.waiters: dict[str, asyncio.Future[float]] = {}

    async def write_checkpoint(
        self, input: CheckpointInput, next: Callable[[CheckpointInput], Awaitable[InstanceRecord]]
    ) -> InstanceRecord:
        self.commits += 1
        return await next(input)

    def instance_started(self, instance: InstanceRecord) -> None:
        self.commits += 1  # the insert

    def instance_finished(self, instance: InstanceRecord) -> None:
        future = self.waiters.pop(instance.id, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def measure(store: Store, count: int, concurrency: int) -> dict[str, float]:
    registry = FunctionRegistry(entry_point_group=None)
    registry.register("add_tax", add_tax, inline=True)
    meter = Meter()
    engine = Engine(store, Activities(ActivityOptions(), registry), interceptors=[meter])
    await engine.deploy(DEFINITION)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        iid = new_instance_id()
        done: asyncio.Future[float] = loop.create_future()
        meter.waiters[iid] = done
        t0 = time.perf_counter()
        await engine.start("bench", "three-steps", "1.0.0", {"order": i, "amount": 10.0}, instance_id=iid)
        latencies.append(await done - t0)

    # Warm up (connections, caches) outside the measurement.
    for i in range(20):
        await one(i)
    latencies.clear()
    meter.commits = 0
    queue = iter(range(count))

    async def client() -> None:
        for i in queue:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await engine.aclose()
    return {
        "instances_per_s": count / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "commits_per_instance": meter.commits / count,
    }


def in_memory(count: int) -> dict[str, float]:
    """The interpreter alone: the same workflow with the function answered in memory."""
    from flowkeeper.definitions import load_definition

    program = Program(load_definition(DEFINITION).document)
    interpreter = Interpreter(program, clock=lambda: datetime.now(UTC))
    started = time.perf_counter()
    for i in range(count):
        iid = f"mem-{i}"
        state = interpreter.new_state(iid, {"order": i, "amount": 10.0}, {})
        step = interpreter.advance(iid, state)
        (call,) = [e for e in step.effects if isinstance(e, FunctionCall)]
        result = EffectResult(call.id, value=add_tax(**call.arguments))
        step = interpreter.advance(iid, state, {call.id: result})
        assert step.status == "completed", step.status
    elapsed = time.perf_counter() - started
    return {"instances_per_s": count / elapsed, "us_per_instance": elapsed / count * 1e6}


async def postgres_url(admin: str) -> str:
    import asyncpg

    dsn = admin.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DROP DATABASE IF EXISTS flowkeeper_bench WITH (FORCE)")
        await connection.execute("CREATE DATABASE flowkeeper_bench")
    finally:
        await connection.close()
    base, _, _ = dsn.rpartition("/")
    return f"{base}/flowkeeper_bench"


async def run_store(label: str, url: str, count: int, concurrency: int) -> None:
    for mode, clients in (("sequential", 1), (f"{concurrency} concurrent", concurrency)):
        store = create_store(url, min_pool_size=2, max_pool_size=max(10, concurrency // 2))
        await store.open()
        await store.migrate()
        try:
            n = max(count // 4, 100) if clients == 1 else count
            figures = await measure(store, n, clients)
        finally:
            await store.close()
        print(
            f"{label:<10} {mode:<14} n={n:<6} {figures['instances_per_s']:8.1f} inst/s  "
            f"p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms  "
            f"commits/instance {figures['commits_per_instance']:.2f}",
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FLOWKEEPER_BENCH_POSTGRES_URL")
        or os.environ.get("FLOWKEEPER_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--only", choices=["memory", "sqlite", "postgres"])
    args = parser.parse_args()
    if args.only in (None, "memory"):
        figures = in_memory(args.count * 5)
        print(
            f"{'memory':<10} {'interpreter':<14} n={args.count * 5:<6} "
            f"{figures['instances_per_s']:8.1f} inst/s  "
            f"{figures['us_per_instance']:.1f} us/instance",
            flush=True,
        )
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            await run_store("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.count, args.concurrency)
    if args.only in (None, "postgres"):
        await run_store("postgres", await postgres_url(args.postgres), args.count, args.concurrency)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
