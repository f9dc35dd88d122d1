"""The runtime facade: deploy definitions, start instances, run claimed ones, fire timers.

``Engine`` owns the store, the activities, the definition cache and the interceptors.
Starting an instance in-process runs its pure prefix before the insert and goes on in
a background task (like DBOS): the caller gets the stored record after one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flowkeeper import version
from flowkeeper.activities import Activities
from flowkeeper.definitions import Definition, canonical_json, load_definition
from flowkeeper.errors import (
    ConcurrencyConflict,
    InputValidationError,
    InstanceConflict,
    InstanceNotFound,
    InvalidTransition,
    WorkflowError,
)
from flowkeeper.records import (
    BookmarkRecord,
    Checkpoint,
    DefinitionRecord,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
)
from flowkeeper.runtime.definitions import DefinitionCache
from flowkeeper.runtime.events import PublishResult, publish
from flowkeeper.runtime.executor import InstanceRun
from flowkeeper.runtime.hooks import (
    ActivityInput,
    CheckpointInput,
    Interceptor,
    chain_activity,
    chain_checkpoint,
)
from flowkeeper.runtime.ids import new_instance_id
from flowkeeper.runtime.scheduled_starts import put_definition
from flowkeeper.store.port import Delivery, Store

JSON = Any
log = logging.getLogger("flowkeeper.runtime")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _same_request(existing: InstanceRecord, request_hash: str) -> InstanceRecord:
    if existing.request_hash != request_hash:
        raise InstanceConflict(
            f"instance {existing.id} was started with a different request (same id or idempotency key)"
        )
    return existing


@dataclass(frozen=True, slots=True)
class Submission:
    """What ``Engine.submit_detailed`` did."""

    record: InstanceRecord
    created: bool
    #: The instance's bookmarks as stored with ``record``, when known without reading
    #: them back (a new instance's first commit made them); None otherwise.
    bookmarks: tuple[BookmarkRecord, ...] | None = None


def default_owner() -> str:
    """A worker identity unique on this host: ``hostname:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Engine:
    """Runs workflow instances against a store, performing effects through activities."""

    def __init__(
        self,
        store: Store,
        activities: Activities,
        *,
        secrets: Mapping[str, JSON] | None = None,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=30),
        interceptors: Sequence[Interceptor] = (),
        clock: Callable[[], datetime] = _utcnow,
        runtime: Mapping[str, JSON] | None = None,
        definition_cache_size: int = 1000,
        event_retention: timedelta = timedelta(hours=1),
    ) -> None:
        self.store = store
        self.activities = activities
        self.secrets: Mapping[str, JSON] = dict(secrets or {})
        self.owner = owner or default_owner()
        #: How long received events are kept for ``listen`` tasks that start late.
        self.event_retention = event_retention
        self.lease = lease
        self.clock = clock
        self.interceptors = list(interceptors)
        descriptor = dict(runtime or {"name": "flowkeeper", "version": version(), "metadata": {}})
        self.definitions = DefinitionCache(store, clock=clock, runtime=descriptor, size=definition_cache_size)
        self._activity_call = chain_activity(self.interceptors, self._perform)
        self._checkpoint_call = chain_checkpoint(self.interceptors, self._checkpoint)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, list[asyncio.Future[InstanceRecord]]] = {}
        self.work_available = asyncio.Event()
        #: Instance runs going on in this process, by instance id.
        self.runs: dict[str, InstanceRun] = {}
        #: Told the due times (database clock) of timers this process's runs created.
        self.timer_listeners: list[Callable[[list[datetime]], None]] = []
        #: Told when outbox rows were committed here (the outbox processor wakes up).
        self.outbox_listeners: list[Callable[[], None]] = []
        #: Correlation specs (``correlation_from``) seen on bookmarks, per event type.
        self.correlation_specs: dict[str, frozenset[str]] = {}

    # -- definitions ---------------------------------------------------------------------------
    async def deploy(
        self, source: str | bytes | Mapping[str, JSON] | Definition
    ) -> tuple[DefinitionRecord, bool]:
        """Validate and store a definition; returns (record, created?). Raises ``DefinitionError``."""
        definition = source if isinstance(source, Definition) else load_definition(source)
        record = DefinitionRecord(
            namespace=definition.namespace,
            name=definition.name,
            version=definition.version,
            document=definition.document,
            source=definition.source,
            content_hash=definition.content_hash,
        )
        stored, created = await put_definition(self, record)  # and its schedule (scheduled_starts)
        self.definitions.add(stored)
        return stored, created

    # -- instances -------------------------------------------------------------------------------
    async def start(
        self,
        namespace: str,
        name: str,
        version: str | None = None,
        input: JSON = None,
        *,
        instance_id: str | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        run: bool = True,
    ) -> InstanceRecord:
        """Accept a new instance and return it once stored.

        With ``run`` (the default) this process runs it right away, starting with its
        pure prefix before the insert; otherwise it is stored ``pending`` for any
        worker to claim. Raises ``DefinitionNotFound``, or ``InputValidationError``
        when the input does not satisfy the definition's ``input.schema``.
        """
        record, _ = await self._start(
            namespace,
            name,
            version,
            input,
            instance_id=instance_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            run=run,
        )
        return record

    async def _start(
        self,
        namespace: str,
        name: str,
        version: str | None,
        input: JSON,
        *,
        instance_id: str | None,
        idempotency_key: str | None,
        request_hash: str | None,
        run: bool,
    ) -> tuple[InstanceRecord, tuple[BookmarkRecord, ...] | None]:
        """``start``, and the instance's bookmarks as stored, when known without a read."""
        definition, interpreter = await self.definitions.get(namespace, name, version)
        iid = instance_id or new_instance_id()
        try:
            state = interpreter.new_state(iid, input, self.secrets)
        except WorkflowError as exc:
            raise InputValidationError(exc.detail or exc.message) from exc
        base = InstanceRecord(
            id=iid,
            namespace=definition.namespace,
            name=definition.name,
            version=definition.version,
            status=InstanceStatus.PENDING,
            input=input,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        if not run:
            stored = await self.store.create_instance(base)
            self.notify_work()
            return stored, ()
        now = self.clock()
        record = replace(
            base,
            status=InstanceStatus.RUNNING,
            lease_owner=self.owner,
            lease_expires_at=now + self.lease,
            started_on=now,
        )
        runner = InstanceRun(self, record, interpreter)
        runner.started_on = now
        step = interpreter.advance(iid, state, {}, secrets=self.secrets)
        self._spawn(runner.drive(state, step))
        stored = await runner.first_commit
        return stored, runner.first_bookmarks

    async def submit(
        self,
        namespace: str,
        name: str,
        version: str | None,
        input: JSON,
        *,
        instance_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[InstanceRecord, bool]:
        """Start an instance idempotently; returns (instance, created?).

        A client-chosen ``instance_id`` or an ``idempotency_key`` seen before with the
        same request returns the existing instance (``created`` False); with another
        request it raises ``InstanceConflict``. Concurrent identical requests create one.
        """
        submitted = await self.submit_detailed(
            namespace, name, version, input, instance_id=instance_id, idempotency_key=idempotency_key
        )
        return submitted.record, submitted.created

    async def submit_detailed(
        self,
        namespace: str,
        name: str,
        version: str | None,
        input: JSON,
        *,
        instance_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submission:
        """``submit``, with the new instance's bookmarks when they are known without a read."""
        request_hash = hashlib.sha256(
            canonical_json({"definition": [namespace, name, version], "input": input}).encode()
        ).hexdigest()
        existing = await self._existing(instance_id, idempotency_key)
        if existing is not None:
            return Submission(_same_request(existing, request_hash), False)
        try:
            record, bookmarks = await self._start(
                namespace,
                name,
                version,
                input,
                instance_id=instance_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                run=True,
            )
        except ConcurrencyConflict:
            # Someone inserted the same id or key between our look and our insert.
            existing = await self._existing(instance_id, idempotency_key)
            if existing is None:
                raise
            return Submission(_same_request(existing, request_hash), False)
        return Submission(record, True, bookmarks)

    async def _existing(self, instance_id: str | None, idempotency_key: str | None) -> InstanceRecord | None:
        if instance_id is not None:
            try:
                return await self.store.get_instance(instance_id)
            except InstanceNotFound:
                pass
        if idempotency_key is not None:
            return await self.store.find_instance_by_idempotency_key(idempotency_key)
        return None

    async def cancel(self, instance_id: str, reason: str | None = None) -> InstanceRecord:
        """Cancel an instance and its children (a running worker's next write is refused)."""
        record = await self.store.cancel_instance(instance_id, reason=reason)
        self.poke([instance_id])
        if record.parent_id:
            self.notify_work()  # the parent's wait was consumed with an error
        self.instance_finished(record)
        return record

    async def suspend(self, instance_id: str) -> InstanceRecord:
        """Suspend an instance until ``resume``; a worker running it stops at its next write."""
        record = await self.store.suspend_instance(instance_id)
        self.poke([instance_id])
        return record

    async def resume(self, instance_id: str) -> InstanceRecord:
        """Undo ``suspend``."""
        record = await self.store.resume_instance(instance_id)
        self.notify_work()
        return record

    async def retry(self, instance_id: str) -> InstanceRecord:
        """Run a failed instance again from its failed activity."""
        current = await self.store.get_instance(instance_id)
        if current.status != InstanceStatus.FAILED:
            raise InvalidTransition(
                f"instance {instance_id} is {current.status}; only a failed instance can be retried"
            )
        _, interpreter = await self.definitions.get(current.namespace, current.name, current.version)
        state = interpreter.retry(current.state) if current.state is not None else None
        record = await self.store.retry_instance(instance_id, state)
        self.notify_work()
        return record

    async def publish(self, event: dict[str, JSON]) -> PublishResult:
        """Deliver a CloudEvent to every instance waiting for it (once per event id)."""
        return await publish(self, event)

    async def run_claimed(self, record: InstanceRecord, delivery: Delivery | None = None) -> InstanceRecord:
        """Run an instance this process has claimed until it waits or ends (``delivery``:
        the claim came with an event's delivery, which also read what the run resumes from)."""
        _, interpreter = await self.definitions.get(record.namespace, record.name, record.version)
        preloaded = None if delivery is None else (delivery.consumed, delivery.timers)
        return await InstanceRun(self, record, interpreter, preloaded).drive()

    def run_delivered(self, delivery: Delivery, *, not_before: float | None = None) -> None:
        """Run, in the background, an instance that an event delivery claimed for us; not
        before ``not_before`` (epoch seconds, this host's clock: timers fired ahead)."""
        assert delivery.claimed is not None
        if not_before is not None and not_before > time.time():
            self._spawn(self._run_later(not_before, delivery))
        else:
            self._spawn(self.run_claimed(delivery.claimed, delivery))

    async def _run_later(self, not_before: float, delivery: Delivery) -> InstanceRecord:
        claimed = delivery.claimed
        assert claimed is not None
        # The lease is ours meanwhile: nobody else runs the instance before we do.
        try:
            # A loop: an event loop's timers run on its cached time (libuv's, read once per
            # turn), so a busy loop can end a sleep early by more than a millisecond.
            while (left := not_before - time.time()) > 0:  # noqa: ASYNC110 - a deadline, not a condition
                await asyncio.sleep(left)
        except asyncio.CancelledError:
            # Shutting down: give the lease back so another replica runs it now, not
            # when the lease expires.
            release = self.store.release_instance(claimed.id, self.owner, claimed.fencing_token)
            with contextlib.suppress(Exception):
                await asyncio.shield(release)
            raise
        return await self.run_claimed(claimed, delivery)

    def run_soon(self, instance_id: str) -> None:
        """Claim and run an instance that just became runnable, without waiting for the
        dispatcher's next pass (an event resumed it here). Another worker may win the
        claim; then this does nothing."""
        if instance_id not in self.runs:
            self._spawn(self._claim_and_run(instance_id))

    async def _claim_and_run(self, instance_id: str) -> InstanceRecord | None:
        claimed = await self.store.claim_instance(instance_id, self.owner, self.lease)
        if claimed is None:
            return None
        return await self.run_claimed(claimed)

    def spawn_claimed(self, record: InstanceRecord) -> asyncio.Task[InstanceRecord]:
        """``run_claimed`` in a background task."""
        return self._spawn(self.run_claimed(record))

    async def wait_for(self, instance_id: str) -> InstanceRecord:
        """The instance's record once it is terminal (no polling: resolved by this process's runs)."""
        record = await self.store.get_instance(instance_id)
        if record.status.is_terminal:
            return record
        future: asyncio.Future[InstanceRecord] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(instance_id, []).append(future)
        record = await self.store.get_instance(instance_id)  # it may have ended meanwhile
        if record.status.is_terminal:
            return record
        return await future

    def idle(self) -> bool:
        """True when no instance run of this engine is going."""
        return not self._tasks

    async def drain(self) -> None:
        """Wait for every instance run started by this engine to park or end."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel running instance runs (their leases expire) and release activities."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.activities.aclose()

    # -- hooks used by instance runs -----------------------------------------------------------
    async def perform_activity(self, input: ActivityInput) -> JSON:
        return await self._activity_call(input)

    async def write_checkpoint(self, input: CheckpointInput) -> InstanceRecord:
        return await self._checkpoint_call(input)

    async def create_instance(self, record: InstanceRecord, checkpoint: Checkpoint) -> InstanceRecord:
        stored_fields: dict[str, JSON] = dict(
            status=checkpoint.status,
            state=checkpoint.state,
            output=checkpoint.output,
            error=checkpoint.error,
            current_activity_id=checkpoint.current_activity_id,
            started_on=checkpoint.started_on,
            completed_on=checkpoint.completed_on,
        )
        if checkpoint.release_lease:
            stored_fields.update(lease_owner=None, lease_expires_at=None)
        stored = await self.store.create_instance(replace(record, **stored_fields), checkpoint)
        for interceptor in self.interceptors:
            interceptor.instance_started(stored)
        return stored

    def notify_work(self) -> None:
        """Something became runnable (a child, a resumed bookmark, a new timer)."""
        self.work_available.set()

    def outbox_written(self) -> None:
        """Outbox rows were committed (emitted events, a re-queued dead letter): deliver now."""
        for listener in self.outbox_listeners:
            listener()

    def timers_created(self, due_times: list[datetime]) -> None:
        """Timers were committed by a run here: tell the timer service when they are due."""
        for listener in self.timer_listeners:
            listener(due_times)

    def poke(self, instance_ids: Iterable[str]) -> None:
        """Wake this process's runs of these instances: something consumed one of their bookmarks."""
        for instance_id in instance_ids:
            run = self.runs.get(instance_id)
            if run is not None:
                run.wake.set()

    def log_written(self, record: InstanceRecord, entries: Sequence[LogEntry]) -> None:
        if entries:
            for interceptor in self.interceptors:
                interceptor.log_written(record, entries)

    def instance_finished(self, record: InstanceRecord) -> None:
        for interceptor in self.interceptors:
            interceptor.instance_finished(record)
        for future in self._waiters.pop(record.id, []):
            if not future.done():
                future.set_result(record)

    async def _perform(self, input: ActivityInput) -> JSON:
        return await self.activities.perform(input.effect)

    async def _checkpoint(self, input: CheckpointInput) -> InstanceRecord:
        return await self.store.checkpoint(input.checkpoint)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Instance run failed", exc_info=task.exception())
