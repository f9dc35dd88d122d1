"""A real engine process for the kill tests: ``python tests/kill/driver.py MODE ...``.

Modes:

``start --database URL --definition FILE --input JSON --count N``
    Migrate, deploy ``FILE``, start ``N`` instances in this process (printing each
    instance id on stdout, one per line, flushed as soon as its start returns), then
    keep working (claim, run, fire timers) until no instance in the database is left
    non-terminal. The tests SIGKILL it long before that.

``resume --database URL``
    A new process on the same database: work until no instance is left non-terminal,
    then print a JSON summary (``{"instances": [{"id", "status", "output", "error"}]}``)
    on stdout and exit 0.

The engine is built with ``flowkeeper.runtime.bootstrap`` from ``load_settings()``, so
``FLOWKEEPER__ENGINE__LEASE_DURATION``, ``FLOWKEEPER__ENGINE__POLL_INTERVAL`` and the
other ``FLOWKEEPER__`` variables apply. Logs go to stderr, never stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from flowkeeper.config import Settings, load_settings
from flowkeeper.records import InstanceRecord, InstanceStatus
from flowkeeper.runtime import Engine, Worker
from flowkeeper.runtime.bootstrap import build_engine, open_store
from flowkeeper.store import Store

NON_TERMINAL = (InstanceStatus.PENDING, InstanceStatus.RUNNING, InstanceStatus.SUSPENDED)


async def all_terminal(store: Store) -> bool:
    """True when the database holds no pending, running or suspended instance."""
    for status in NON_TERMINAL:
        if (await store.list_instances(status=status, limit=1)).items:
            return False
    return True


async def all_instances(store: Store) -> list[InstanceRecord]:
    found: list[InstanceRecord] = []
    cursor: str | None = None
    while True:
        page = await store.list_instances(limit=100, cursor=cursor)
        found.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return found


async def work_until_terminal(engine: Engine, settings: Settings) -> None:
    worker = Worker(
        engine,
        concurrency=settings.engine.concurrency,
        poll_interval=settings.engine.poll_interval.total_seconds(),
    )
    await worker.run_until(lambda: all_terminal(engine.store))
    await worker.drain()
    await engine.drain()


async def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings, args.database)
    await store.open()
    engine: Engine | None = None
    try:
        if args.mode == "start":
            await store.migrate()
        engine = build_engine(settings, store)
        logging.getLogger("flowkeeper.kill").info("%s as %s", args.mode, engine.owner)
        if args.mode == "start":
            record, _ = await engine.deploy(args.definition_text)
            data: Any = json.loads(args.input)
            for _ in range(args.count):
                instance = await engine.start(record.namespace, record.name, record.version, data)
                print(instance.id, flush=True)
        await work_until_terminal(engine, settings)
        summary = [
            {"id": r.id, "status": str(r.status), "output": r.output, "error": r.error}
            for r in await all_instances(store)
        ]
        print(json.dumps({"instances": summary}), flush=True)
        return 0
    finally:
        if engine is not None:
            await engine.aclose()
        await store.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="driver.py", description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    start = modes.add_parser("start", help="deploy, start N instances and work on them")
    start.add_argument("--database", required=True)
    start.add_argument("--definition", required=True)
    start.add_argument("--input", default="{}")
    start.add_argument("--count", type=int, default=1)
    resume = modes.add_parser("resume", help="work until every instance is terminal")
    resume.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    if args.mode == "start":
        args.definition_text = Path(args.definition).read_text(encoding="utf-8")
    return args


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(process)d %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
