"""Outbox benchmark: one OutboxProcessor delivering pre-inserted rows to one loopback webhook.

N outbox rows (default 5,000, due at once) are written first; then one processor
delivers them to a webhook receiver running in a separate process (a bare asyncio
protocol answering ``204`` over keep-alive connections, on uvloop when installed), on
SQLite and on PostgreSQL. Prints deliveries per second, from the processor's start to
the last row marked delivered in the database.

    python bench/outbox.py [--count N] [--batch-size B] [--only sqlite|postgres] [--postgres URL]

``measure_outbox(url, count)`` is the same measurement for other bench scripts: it
starts its own receiver and returns the figures as a dict. PostgreSQL defaults to
FLOWKEEPER_BENCH_POSTGRES_URL or FLOWKEEPER_TEST_POSTGRES_URL; a database
``flowkeeper_bench_outbox`` is created (dropped first) on that server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from flowkeeper.config import OutboxProcessorSettings, WebhookSinkSettings
from flowkeeper.records import Checkpoint, InstanceRecord, InstanceStatus, OutboxRecord, OutboxStatus
from flowkeeper.services.outbox import OutboxProcessor
from flowkeeper.services.sinks import WebhookSink
from flowkeeper.store import Store, create_store

#: Rows per checkpoint while preparing (one transaction each).
INSERT_CHUNK = 1000
BENCH_DATABASE = "flowkeeper_bench_outbox"

# -- the receiver (its own process) ---------------------------------------------------------------


class _Http(asyncio.Protocol):
    """HTTP/1.1 requests in, ``204 No Content`` out; keep-alive, no parsing beyond framing."""

    def __init__(self) -> None:
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = (
                int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
                if at >= 0
                else 0
            )
            if len(self.buffer) < end + 4 + length:
                break
            self.buffer = self.buffer[end + 4 + length :]
            answers += 1
        if answers:
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n" * answers)


def serve_receiver(port: int) -> None:
    """Run the receiver until killed."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Http, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def receiver_process() -> Iterator[str]:
    """A receiver in a child process; yields its URL."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/events"
    finally:
        process.kill()
        process.wait()


# -- the measurement ------------------------------------------------------------------------------


async def insert_rows(store: Store, count: int) -> None:
    """``count`` due outbox rows, as workflows' ``emit`` writes them (one instance per chunk)."""
    now = await store.now()
    for start in range(0, count, INSERT_CHUNK):
        instance = await store.create_instance(
            InstanceRecord(
                id=str(uuid.uuid4()),
                namespace="bench",
                name="emitter",
                version="1.0.0",
                status=InstanceStatus.RUNNING,
                lease_owner="bench",
                lease_expires_at=now + timedelta(minutes=5),
            )
        )
        rows = tuple(
            OutboxRecord(
                id=event_id,
                instance_id=instance.id,
                activity_id="/do/0/emit",
                event={
                    "specversion": "1.0",
                    "id": event_id,
                    "source": "https://bench.flowkeeper",
                    "type": "com.example.order.placed",
                    "datacontenttype": "application/json",
                    "data": {"order": n, "amount": 42.5, "currency": "EUR"},
                },
                next_attempt_at=now,
            )
            for n in range(start, min(start + INSERT_CHUNK, count))
            for event_id in [str(uuid.uuid4())]
        )
        await store.checkpoint(
            Checkpoint(
                instance_id=instance.id,
                expected_row_version=instance.row_version,
                fencing_token=instance.fencing_token,
                lease_owner="bench",
                status=InstanceStatus.COMPLETED,
                state=None,
                outbox=rows,
                release_lease=True,
            )
        )


async def measure_outbox(
    url: str, count: int, *, batch_size: int = 200, receiver: str | None = None
) -> dict[str, Any]:
    """Deliver ``count`` new rows with one processor; deliveries per second and friends.

    ``url`` is the database (migrated here; its outbox should hold no other due rows);
    ``receiver`` a webhook URL answering 2xx (default: a receiver process started here).
    """
    if receiver is None:
        with receiver_process() as started:
            return await measure_outbox(url, count, batch_size=batch_size, receiver=started)
    store = create_store(url, min_pool_size=2, max_pool_size=10)
    await store.open()
    try:
        await store.migrate()
        await insert_rows(store, count)
        settings = OutboxProcessorSettings(batch_size=batch_size)
        sink = WebhookSink(
            WebhookSinkSettings(name="bench", type="webhook", url=receiver), max_connections=batch_size
        )
        processor = OutboxProcessor(store, settings, sinks=[sink], owner="bench")
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(processor.run(stop))
        while True:  # polled: figures() is a snapshot of counters, no I/O
            if processor.figures().delivered >= count or task.done():
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        counts = await store.count_outbox()
        failed = sum(n for (_, outcome), n in processor.figures().deliveries.items() if outcome == "failed")
        return {
            "database": store.url.split(":", 1)[0],
            "count": count,
            "batch_size": batch_size,
            "seconds": elapsed,
            "deliveries_per_s": count / elapsed,
            "failed_deliveries": failed,
            "left_undelivered": counts[OutboxStatus.PENDING] + counts[OutboxStatus.PROCESSING],
        }
    finally:
        await store.close()


async def postgres_url(admin: str) -> str:
    """A fresh database for the benchmark on ``admin``'s server."""
    import asyncpg

    dsn = admin.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    finally:
        await connection.close()
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{BENCH_DATABASE}"


def _print(label: str, figures: dict[str, Any]) -> None:
    print(
        f"{label:<10} n={figures['count']:<6} batch={figures['batch_size']:<4} "
        f"{figures['deliveries_per_s']:8.1f} deliveries/s  ({figures['seconds']:.2f} s, "
        f"{figures['failed_deliveries']} failed, {figures['left_undelivered']} left)",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FLOWKEEPER_BENCH_POSTGRES_URL")
        or os.environ.get("FLOWKEEPER_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    with receiver_process() as receiver:
        if args.only in (None, "sqlite"):
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
                _print(
                    "sqlite",
                    await measure_outbox(url, args.count, batch_size=args.batch_size, receiver=receiver),
                )
        if args.only in (None, "postgres"):
            url = await postgres_url(args.postgres)
            _print(
                "postgres",
                await measure_outbox(url, args.count, batch_size=args.batch_size, receiver=receiver),
            )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        serve_receiver(int(sys.argv[2]))
    else:
        asyncio.run(main())
