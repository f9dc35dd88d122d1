"""Runs one claimed instance: drives the interpreter, performs outside effects, checkpoints.

The loop, for one instance under one lease:

1. ``advance`` the interpreter with the results that arrived (pure steps run here);
2. persisted effects (bookmarks, timers, children, outbox) join the pending changes;
3. before starting new outside effects, commit if an earlier outside effect's result
   has been absorbed since the last commit (so a crash never repeats a completed
   call); then start them concurrently;
4. wait for the first outside effect to finish, and go to 1 with its result;
5. when nothing is in flight, commit: the instance is suspended (waiting on
   bookmarks), finished, or yielded a long pure stretch.

So a workflow ``set -> call -> set`` started in-process costs two commits: the insert
(state positioned at the call) and the final one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowkeeper.engine import CANCELLED, COMPLETED, FAULTED, WAITING, Interpreter, Step
from flowkeeper.engine.effects import (
    OUTSIDE_EFFECTS,
    CancelWait,
    Effect,
    EffectResult,
    StartChild,
    StartTimer,
)
from flowkeeper.errors import ConcurrencyConflict, DefinitionNotFound, WorkflowError, standard_error
from flowkeeper.records import (
    BookmarkRecord,
    BookmarkResume,
    Checkpoint,
    InstanceRecord,
    InstanceStatus,
    TimerRecord,
)
from flowkeeper.runtime.changes import PendingChanges
from flowkeeper.runtime.events import candidates as event_candidates
from flowkeeper.runtime.events import deliver_retained, event_key, matching
from flowkeeper.runtime.hooks import ActivityInput, CheckpointInput
from flowkeeper.runtime.scheduled_starts import start_for_event
from flowkeeper.schedule_records import ScheduleKind

if TYPE_CHECKING:
    from flowkeeper.runtime.engine import Engine

JSON = Any
log = logging.getLogger("flowkeeper.runtime")

_STATUS = {
    COMPLETED: InstanceStatus.COMPLETED,
    FAULTED: InstanceStatus.FAILED,
    CANCELLED: InstanceStatus.CANCELLED,
    WAITING: InstanceStatus.SUSPENDED,
}


class InstanceRun:
    """The life of one instance between its claim and its next suspension or end."""

    def __init__(
        self,
        engine: Engine,
        record: InstanceRecord,
        interpreter: Interpreter,
        preloaded: tuple[Sequence[BookmarkRecord], Sequence[TimerRecord]] | None = None,
    ) -> None:
        self.engine = engine
        self.record = record
        #: The claimed instance's consumed bookmarks and timers, when the claim read them.
        self.preloaded = preloaded
        self.interpreter = interpreter
        self.id = record.id
        self.definition = f"{record.namespace}/{record.name}/{record.version}"
        self.changes = PendingChanges(record.id)
        self.results: dict[str, EffectResult] = {}
        self.inflight: dict[str, asyncio.Task[EffectResult]] = {}
        self.dirty = False
        self.started_on: datetime | None = record.started_on
        self._renewer: asyncio.Task[None] | None = None
        self.to_perform: list[Effect] = []
        #: Set when something outside this run consumed one of our bookmarks.
        self.wake = asyncio.Event()
        #: Due times of our timers (bookmark id -> due), to wake up for them mid-call.
        self.due: dict[str, datetime] = {}
        #: Consumed bookmarks already fed to the interpreter (applied at the next commit).
        self.fed: set[str] = set()
        #: False until the instance has been inserted (an in-process start inserts it
        #: at its first commit, with the state already past its pure prefix).
        self.stored = record.row_version > 0
        #: Resolved with the stored record after the first commit.
        self.first_commit: asyncio.Future[InstanceRecord] = asyncio.get_running_loop().create_future()
        #: The instance's bookmarks as of its first commit, when known (see ``_commit``).
        self.first_bookmarks: tuple[BookmarkRecord, ...] | None = None
        # Our own bookmarks consumed by our own emitted events: applied at the next commit.
        self._apply_next: list[str] = []
        self._poke_after_commit: set[str] = set()

    # -- entry -----------------------------------------------------------------------------
    async def drive(self, state: dict[str, JSON] | None = None, step: Step | None = None) -> InstanceRecord:
        """Run until the instance waits, ends, or our lease is lost; return the stored record."""
        self._renewer = asyncio.create_task(self._renew_lease())
        self.engine.runs[self.id] = self
        try:
            return await self._drive(state, step)
        except ConcurrencyConflict as exc:
            if not self.first_commit.done():  # the insert itself conflicted: the starter must know
                self.first_commit.set_exception(exc)
                self.first_commit.exception()
            log.warning("Concurrency conflict on instance %s: another worker owns it now", self.id)
            return self.record
        except asyncio.CancelledError as exc:
            if not self.first_commit.done():
                self.first_commit.set_exception(exc)
                self.first_commit.exception()
            if self.stored and self.record.lease_owner == self.engine.owner:
                # Shutting down: give the lease back so another replica resumes it now,
                # not when the lease expires.
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.engine.store.release_instance(
                            self.id, self.engine.owner, self.record.fencing_token
                        )
                    )
            raise
        except BaseException as exc:
            if not self.first_commit.done():
                self.first_commit.set_exception(exc)
                self.first_commit.exception()  # retrieved: the starter re-raises it
            raise
        finally:
            if self.engine.runs.get(self.id) is self:
                del self.engine.runs[self.id]
            self._renewer.cancel()
            for task in self.inflight.values():
                task.cancel()

    async def _drive(self, state: dict[str, JSON] | None, step: Step | None) -> InstanceRecord:
        engine = self.engine
        while True:
            if step is None:
                state, step = await self._resume(state)
                if step is None:  # the input was refused: already stored as failed
                    return self.record
            assert state is not None
            await self._absorb(step)
            if step.status in (COMPLETED, FAULTED, CANCELLED):
                return await self._finish(step)
            if self.to_perform or self.inflight:
                # A completed outside effect is checkpointed before anything else goes
                # out, and even while other calls are still in flight: a crash must not
                # repeat it. (A new instance is inserted before its first effect.)
                if self.dirty or not self.stored:
                    await self._commit(step, InstanceStatus.RUNNING, release=False)
                for effect in self.to_perform:
                    if effect.id not in self.inflight:
                        self.inflight[effect.id] = asyncio.create_task(self._perform(effect))
                self.to_perform = []
            if not self.inflight and not self.results:
                if step.yielded:
                    await self._commit(step, InstanceStatus.RUNNING, release=False)
                else:
                    stored = await self._commit(step, InstanceStatus.SUSPENDED, release=True)
                    if stored.status != InstanceStatus.RUNNING:
                        return stored
                    # Something consumed one of our bookmarks meanwhile: go on if we can re-claim.
                    claimed = await engine.store.claim_instance(self.id, engine.owner, engine.lease)
                    if claimed is None:
                        return stored
                    self.record = claimed
                    step, state = None, claimed.state
                    continue
            elif self.inflight and not self.results:
                await self._wait_for_results()
            if self.wake.is_set():
                await self._collect_wakeups()
            results, self.results = self.results, {}
            step = self._advance(state, results)

    async def _resume(self, state: dict[str, JSON] | None) -> tuple[dict[str, JSON] | None, Step | None]:
        """Load what happened while the instance was parked, and take a first step."""
        engine = self.engine
        if state is None and self.record.state is None:
            try:
                state = self.interpreter.new_state(self.id, self.record.input, engine.secrets)
            except WorkflowError as exc:
                await self._refuse_input(exc)
                return None, None
            self.started_on = engine.clock()
        elif state is None:
            state = self.record.state
        assert state is not None
        if self.preloaded is not None:  # read by the claim itself (an event's delivery)
            consumed, timers = self.preloaded
            self.preloaded = None
        else:
            consumed, timers = await asyncio.gather(
                engine.store.list_bookmarks(self.id, consumed=True), engine.store.list_timers(self.id)
            )
        for bookmark in consumed:
            self.fed.add(bookmark.id)
            self.results[bookmark.id] = EffectResult(bookmark.id, value=bookmark.payload)
            self.changes.applied.append(bookmark.id)
        self.due = {t.bookmark_id: t.due_at for t in timers}
        results, self.results = self.results, {}
        return state, self._advance(state, results)

    async def _wait_for_results(self) -> None:
        """Wait for the first outside effect to finish, or for one of our waits to end.

        While a call is in flight, a timer of ours may come due (a task timeout) or an
        event may consume one of our bookmarks: both must interrupt the wait, not be
        seen only after the call returns.
        """
        waker = asyncio.create_task(self._sleep_until_wake())
        try:
            done, _ = await asyncio.wait(
                [*self.inflight.values(), waker], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waker.cancel()
        for task in done:
            if task is waker:
                continue
            result = task.result()
            assert isinstance(result, EffectResult)
            self.inflight.pop(result.id, None)
            self.results[result.id] = result
            self.dirty = True
        due = self._next_due()
        if waker in done or self.wake.is_set() or (due is not None and due <= self.engine.clock()):
            await self._collect_wakeups()

    def _next_due(self) -> datetime | None:
        return min(self.due.values()) if self.due else None

    async def _sleep_until_wake(self) -> None:
        due = self._next_due()
        delay = None if due is None else max((due - self.engine.clock()).total_seconds(), 0.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), delay)

    async def _collect_wakeups(self) -> None:
        """Fire our due timers and feed every bookmark of ours that was consumed."""
        self.wake.clear()
        store = self.engine.store
        due = self._next_due()
        if due is not None and due <= self.engine.clock():
            fired = await store.fire_due_timers(100)
            self.engine.poke(t.instance_id for t in fired if t.instance_id != self.id)
        for bookmark in await store.list_bookmarks(self.id, consumed=True):
            if bookmark.id in self.fed:
                continue
            self.fed.add(bookmark.id)
            self.due.pop(bookmark.id, None)
            self.results[bookmark.id] = EffectResult(bookmark.id, value=bookmark.payload)
            self.changes.applied.append(bookmark.id)

    def _advance(self, state: dict[str, JSON], results: dict[str, EffectResult]) -> Step:
        """One interpreter step; a defect in the interpreter fails the instance, not the worker."""
        try:
            return self.interpreter.advance(
                self.id, state, results, inflight=set(self.inflight), secrets=self.engine.secrets
            )
        except Exception as exc:
            log.exception("ENGINE: Critical error in instance %s", self.id)
            error = standard_error("runtime", f"internal error: {type(exc).__name__}").to_dict()
            error["instance"] = state.get("active") or "/"
            state.update(status=FAULTED, error=error, root=None)
            return Step(state, FAULTED, error=error)

    # -- effects ------------------------------------------------------------------------------

    async def _absorb(self, step: Step) -> None:
        """Sort a step's effects: outside ones to perform, the others into pending changes."""
        now = self.engine.clock()
        self.changes.add_log(step.log)
        self.to_perform = []
        for effect in step.effects:
            if isinstance(effect, OUTSIDE_EFFECTS):
                self.to_perform.append(effect)
            elif isinstance(effect, CancelWait) and effect.kind == "call":
                task = self.inflight.pop(effect.target, None)
                if task is not None:
                    task.cancel()
            elif isinstance(effect, StartTimer):
                self.due[effect.id] = effect.due_at
                self.changes.add_effect(effect, now)
            elif isinstance(effect, StartChild):
                try:
                    record, _ = await self.engine.definitions.get(
                        effect.namespace, effect.name, effect.version
                    )
                except DefinitionNotFound:
                    wanted = f"{effect.namespace}/{effect.name}/{effect.version or 'latest'}"
                    error = standard_error("configuration", f"workflow {wanted} is not deployed", status=404)
                    self.results[effect.id] = EffectResult(effect.id, error=error.to_dict())
                    continue
                self.changes.add_effect(replace(effect, version=record.version), now)
            else:
                if isinstance(effect, CancelWait):
                    self.due.pop(effect.target, None)
                self.changes.add_effect(effect, now)

    async def _perform(self, effect: Effect) -> EffectResult:
        try:
            value = await self.engine.perform_activity(ActivityInput(self.id, self.definition, effect))
            return EffectResult(effect.id, value=value)
        except WorkflowError as exc:
            return EffectResult(effect.id, error=exc.to_dict())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an activity bug must fault the task, not kill the worker
            log.exception("Activity %s of instance %s failed unexpectedly", effect.activity_id, self.id)
            error = standard_error("runtime", f"{type(exc).__name__}: {exc}")
            return EffectResult(effect.id, error=error.to_dict())

    # -- checkpoints ---------------------------------------------------------------------------
    async def _route_emitted(self) -> None:
        """Emitted events consume matching bookmarks: ours in memory, others' in the same commit."""
        taken: set[str] = set()
        for emit in self.changes.emitted:
            event = emit.event
            # Bookmarks of this very commit first, then the stored ones; each consumed once.
            candidates = [*self.changes.bookmarks.values(), *await event_candidates(self.engine, event)]
            for bookmark in matching((b for b in candidates if b.id not in taken), event):
                taken.add(bookmark.id)
                if bookmark.id in self.changes.bookmarks:
                    self.changes.bookmarks[bookmark.id] = replace(bookmark, is_consumed=True, payload=event)
                else:
                    self.changes.resumes.append(BookmarkResume(bookmark.id, event))
                    self._poke_after_commit.add(bookmark.instance_id)
                if bookmark.instance_id == self.id:
                    self.results[bookmark.id] = EffectResult(bookmark.id, value=event)
                    self._apply_next.append(bookmark.id)
                    self.fed.add(bookmark.id)
        self.changes.emitted.clear()

    async def _commit(self, step: Step, status: InstanceStatus, *, release: bool) -> InstanceRecord:
        engine = self.engine
        self._apply_next = []
        if self.changes.emitted:
            await self._route_emitted()
        changes = self.changes
        finished = status.is_terminal
        checkpoint = Checkpoint(
            instance_id=self.id,
            expected_row_version=self.record.row_version,
            fencing_token=self.record.fencing_token,
            lease_owner=engine.owner,
            status=status,
            state=step.state,
            output=step.output,
            error=step.error,
            current_activity_id=step.active or self.record.current_activity_id,
            started_on=self.started_on,
            completed_on=engine.clock() if finished else None,
            log=tuple(changes.log),
            new_bookmarks=tuple(changes.bookmarks.values()),
            applied_bookmarks=tuple(changes.applied),
            cancelled_bookmarks=tuple(changes.cancelled_bookmarks),
            new_timers=tuple(changes.timers),
            cancelled_timers=tuple(changes.cancelled_timers),
            outbox=tuple(changes.outbox),
            new_instances=tuple(changes.children),
            resume_bookmarks=tuple(changes.resumes),
            release_lease=release,
        )
        wakes_others = bool(changes.children) or any(
            r.bookmark_id not in self._apply_next for r in changes.resumes
        )
        if self.stored:
            stored = await engine.write_checkpoint(CheckpointInput(self.record, checkpoint))
        else:
            stored = await engine.create_instance(self.record, checkpoint)
            self.stored = True
        engine.log_written(stored, checkpoint.log)
        if checkpoint.outbox:  # schedule.on: emitted events start runs too
            on = await engine.store.list_schedules(ScheduleKind.ON)
            for row in checkpoint.outbox:
                await start_for_event(engine, row.event, event_key(row.event), schedules=on)
        served = await deliver_retained(engine, stored.created_on, list(checkpoint.new_bookmarks))
        if served:
            # An event that came before its listen: the bookmark is consumed now.
            if release:
                stored = await engine.store.get_instance(self.id)
            else:
                self.wake.set()
        self.record = stored
        if not self.first_commit.done():
            # What the starter may show without reading them back: the bookmarks this
            # commit made, unless something consumed or removed some of them already.
            untouched = not (served or checkpoint.applied_bookmarks or checkpoint.cancelled_bookmarks)
            self.first_bookmarks = _as_stored(checkpoint.new_bookmarks, stored) if untouched else None
            self.first_commit.set_result(stored)
        self.dirty = False
        self.changes = PendingChanges(self.id)
        self.changes.applied.extend(self._apply_next)
        if checkpoint.new_timers:
            engine.timers_created([t.due_at for t in checkpoint.new_timers])
        if checkpoint.outbox:
            engine.outbox_written()
        if wakes_others or bool(checkpoint.new_timers):
            engine.notify_work()
        engine.poke(i for i in self._poke_after_commit if i != self.id)
        self._poke_after_commit = set()
        return stored

    async def _finish(self, step: Step) -> InstanceRecord:
        status = _STATUS[step.status]
        if self.record.parent_bookmark_id:
            payload = {"output": step.output} if status == InstanceStatus.COMPLETED else {"error": step.error}
            self.changes.resumes.append(BookmarkResume(self.record.parent_bookmark_id, payload))
        for task in self.inflight.values():
            task.cancel()
        self.inflight.clear()
        stored = await self._commit(step, status, release=True)
        self.engine.instance_finished(stored)
        return stored

    async def _refuse_input(self, error: WorkflowError) -> None:
        """A pending instance whose input its definition rejects fails at once."""
        data = error.to_dict()
        data.setdefault("instance", "/input")
        step = Step(state={"v": 1, "status": FAULTED, "error": data}, status=FAULTED, error=data)
        step.log = []
        await self._finish(step)

    async def _renew_lease(self) -> None:
        """Keep our lease while the run lives: renewed every third of its duration while
        we hold it (not after a commit released it; again after a re-claim)."""
        engine = self.engine
        interval = max(engine.lease.total_seconds() / 3, 0.05)
        lost: int | None = None
        while True:
            await asyncio.sleep(interval)
            token = self.record.fencing_token
            if self.record.lease_owner != engine.owner or token == lost:
                continue
            with contextlib.suppress(Exception):
                if await engine.store.renew_lease(self.id, engine.owner, token, engine.lease):
                    continue
                # A commit of ours releasing the lease may have raced this renewal: the
                # lease is lost only if another claim (a new fencing token) took it.
                current = await engine.store.get_instance(self.id)
                if current.fencing_token != token:
                    lost = token
                    log.warning("Lost the lease of instance %s (fencing token %d)", self.id, token)


def _as_stored(bookmarks: Sequence[BookmarkRecord], stored: InstanceRecord) -> tuple[BookmarkRecord, ...]:
    """New bookmarks as the commit that stored ``stored`` wrote them: the store stamps
    what a record leaves open with the clock of that commit, ``stored.updated_on``."""
    at = stored.updated_on
    written = []
    for b in bookmarks:
        consumed_on = b.consumed_on or (at if b.is_consumed else None)
        written.append(replace(b, created_on=b.created_on or at, consumed_on=consumed_on))
    return tuple(written)
