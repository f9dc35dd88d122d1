"""``flowkeeper run``: one instance to the end on an embedded store, per DESIGN.md's contract."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flowkeeper.cli.output import EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_SUSPENDED, emit_json
from flowkeeper.config import Settings, load_settings
from flowkeeper.definitions import Definition, read_definition_file
from flowkeeper.errors import (
    ConfigurationError,
    DefinitionConflict,
    DefinitionError,
    DefinitionNotFound,
    FlowkeeperError,
    InputValidationError,
)
from flowkeeper.records import InstanceRecord, InstanceStatus
from flowkeeper.runtime import Engine
from flowkeeper.runtime.bootstrap import build_engine, open_store
from flowkeeper.runtime.worker import run_to_end

JSON = Any
log = logging.getLogger("flowkeeper.cli")


@dataclass(frozen=True)
class RunRequest:
    """The options of ``flowkeeper run``."""

    file: Path
    input_text: str | None = None
    input_file: Path | None = None
    database: str | None = None
    wait: float | None = None
    execution_log: Path | None = None
    deploy: list[Path] | None = None
    config: Path | None = None


class UsageError(Exception):
    """Bad options or input: reported on stderr with exit 2."""


def _read_input(request: RunRequest) -> JSON:
    if request.input_text is not None and request.input_file is not None:
        raise UsageError("give --input or --input-file, not both")
    if request.input_text is not None:
        try:
            return json.loads(request.input_text)
        except ValueError as exc:
            raise UsageError(f"--input is not valid JSON: {exc}") from None
    if request.input_file is not None:
        try:
            text = request.input_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read --input-file {request.input_file}: {exc.strerror}") from None
        try:
            return yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            raise UsageError(f"--input-file {request.input_file} is not valid JSON or YAML: {exc}") from None
    return {}


def run_workflow(request: RunRequest) -> int:
    """Run and report; returns the exit code."""
    try:
        settings = load_settings(request.config)
        definition = read_definition_file(request.file)
        extra = [read_definition_file(path) for path in request.deploy or []]
        data = _read_input(request)
    except (ConfigurationError, DefinitionError, UsageError) as exc:
        return _invalid(str(exc))
    try:
        return asyncio.run(_run(settings, definition, extra, data, request))
    except (DefinitionConflict, DefinitionNotFound, InputValidationError) as exc:
        return _invalid(str(exc))
    except FlowkeeperError as exc:
        log.error("%s", exc)
        return _invalid(str(exc))


def _invalid(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_INVALID


async def _run(
    settings: Settings, definition: Definition, extra: list[Definition], data: JSON, request: RunRequest
) -> int:
    workdir = tempfile.mkdtemp(prefix="flowkeeper-run-") if request.database is None else None
    url = request.database or f"sqlite+aiosqlite:///{workdir}/run.db"
    store = open_store(settings, url)
    await store.open()
    engine: Engine | None = None
    try:
        await store.migrate()
        engine = build_engine(settings, store)
        for item in [*extra, definition]:
            await engine.deploy(item)
        record = await engine.start(definition.namespace, definition.name, definition.version, data)
        log.info(
            "Started instance %s of %s/%s/%s",
            record.id,
            definition.namespace,
            definition.name,
            definition.version,
        )
        record = await run_to_end(
            engine,
            record.id,
            limit=request.wait,
            stop_when_idle=workdir is not None,
            concurrency=settings.engine.concurrency,
            poll_interval=settings.engine.poll_interval.total_seconds(),
        )
        if request.execution_log is not None:
            await _write_log(engine, record.id, request.execution_log)
        return await _report(engine, record)
    finally:
        if engine is not None:
            await engine.aclose()
        await store.close()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


async def _report(engine: Engine, record: InstanceRecord) -> int:
    if record.status == InstanceStatus.COMPLETED:
        emit_json(record.output)
        return EXIT_OK
    if record.status == InstanceStatus.FAILED:
        emit_json(record.error)
        return EXIT_FAILED
    bookmarks = await engine.store.list_bookmarks(record.id, consumed=False)
    emit_json(
        {
            "id": record.id,
            "status": "suspended" if record.status == InstanceStatus.SUSPENDED else str(record.status),
            "bookmarks": [
                {"id": b.id, "activityId": b.activity_id, "kind": str(b.kind), "filter": b.filter}
                for b in bookmarks
            ],
        }
    )
    return EXIT_SUSPENDED


async def _write_log(engine: Engine, instance_id: str, path: Path) -> None:
    entries = await engine.store.get_log(instance_id)
    with path.open("w", encoding="utf-8") as out:
        for entry in entries:
            line: dict[str, JSON] = {
                "reference": entry.reference,
                "name": entry.name,
                "type": entry.task_type,
                "event": str(entry.event),
                "at": entry.at.isoformat(),
            }
            if entry.detail:
                line["detail"] = entry.detail
            out.write(json.dumps(line, default=str) + "\n")
