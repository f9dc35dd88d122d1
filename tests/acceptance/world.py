"""Runs one scenario's workflow in-process on a real store and keeps what it observed.

The same observations as the CLI contract checker (``shared/tools/swf_cli_check.py``):
status, output or error, the execution log, how long it took, and what the loopback
stand-in received.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.errors import DefinitionError, InputValidationError
from flowkeeper.records import InstanceStatus, LogEntry
from flowkeeper.runtime import Engine, run_to_end
from flowkeeper.store import create_store

#: What ``tests/features/secrets.feature`` expects (the CLI gets them as FLOWKEEPER_SECRET_*).
SECRETS = {
    "API_TOKEN": "s3cr3t",
    "BASIC": {"username": "serverless-workflow", "password": "conformance-test"},
}
#: The longest any scenario may run before it counts as stuck.
DEFAULT_WAIT = 30.0


@dataclass
class Outcome:
    """What running a scenario's workflow produced (``code`` mirrors the CLI's exit codes)."""

    code: int
    document: Any = None
    log: list[LogEntry] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    def _tasks(self) -> list[LogEntry]:
        return [e for e in self.log if e.name and e.reference not in ("", "/", "/do")]

    def task_starts(self) -> list[str]:
        return [str(e.name) for e in self._tasks() if e.event == "started"]

    def task_ends(self) -> list[str]:
        return [str(e.name) for e in self._tasks() if e.event in ("completed", "faulted")]


def run_workflow(
    store_url: str,
    definition: str,
    data: Any,
    *,
    wait: float | None,
    functions: FunctionRegistry | None = None,
    extra_definitions: list[str] | None = None,
) -> Outcome:
    """Deploy and run ``definition`` on a fresh store at ``store_url``."""
    return asyncio.run(_run(store_url, definition, data, wait, functions, extra_definitions or []))


async def _run(
    store_url: str,
    definition: str,
    data: Any,
    wait: float | None,
    functions: FunctionRegistry | None,
    extra: list[str],
) -> Outcome:
    store = create_store(store_url, min_pool_size=1, max_pool_size=10)
    await store.open()
    engine = Engine(store, Activities(ActivityOptions(timeout=20.0), functions), secrets=SECRETS)
    started = time.monotonic()
    try:
        await store.migrate()
        try:
            for text in extra:
                await engine.deploy(text)
            record, _ = await engine.deploy(definition)
        except DefinitionError as exc:
            return Outcome(2, message=str(exc))
        try:
            instance = await engine.start(record.namespace, record.name, record.version, data)
        except InputValidationError as exc:
            return Outcome(2, message=str(exc))
        instance = await run_to_end(engine, instance.id, limit=wait or DEFAULT_WAIT, stop_when_idle=True)
        log = await store.get_log(instance.id)
        seconds = time.monotonic() - started
        if instance.status == InstanceStatus.COMPLETED:
            return Outcome(0, instance.output, log, seconds)
        if instance.status == InstanceStatus.FAILED:
            return Outcome(1, instance.error, log, seconds)
        return Outcome(3, {"id": instance.id, "status": "suspended"}, log, seconds)
    finally:
        await engine.aclose()
        await store.close()
