"""The persistence port: everything the rest of Flowkeeper may ask of a database.

Adapters (SQLite, PostgreSQL) implement :class:`Store`; ``create_store(url)`` picks one.
Every method is a coroutine; every write is one transaction. Driver errors are wrapped
in :class:`~flowkeeper.errors.StoreError` subclasses with the cause kept.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from flowkeeper.records import (
    JSON,
    BookmarkRecord,
    Checkpoint,
    DefinitionRecord,
    EventRecord,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
    OutboxRecord,
    OutboxStatus,
    TimerRecord,
)
from flowkeeper.schedule_records import ScheduleKind, ScheduleRecord
from flowkeeper.store.notifications import Listener


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Which migration the database is at, and which the code expects."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True, slots=True)
class InstancePage:
    """One page of a listing; ``next_cursor`` is None on the last page."""

    items: list[InstanceRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What ``deliver_and_claim`` did: delivered or not and, when it could also claim the
    woken instance, the claimed record with what its run needs to resume."""

    delivered: bool
    claimed: InstanceRecord | None = None
    #: The claimed instance's consumed bookmarks, oldest first.
    consumed: tuple[BookmarkRecord, ...] = ()
    #: The claimed instance's pending timers, earliest first.
    timers: tuple[TimerRecord, ...] = ()


class Store(Protocol):
    """Persistence for definitions, instances, bookmarks, timers, outbox and execution log."""

    url: str

    # -- life cycle --------------------------------------------------------------------
    async def open(self) -> None:
        """Connect (create the pool). Safe to call twice."""

    async def close(self) -> None:
        """Dispose of the pool."""

    async def migrate(self) -> None:
        """Apply pending migrations (Alembic) up to head."""

    async def schema_status(self) -> SchemaStatus:
        """Current and expected migration revisions."""

    async def now(self) -> datetime:
        """The database clock (UTC); due times are compared against it."""

    async def ping(self) -> None:
        """A cheap round trip; raises ``StoreUnavailable`` when the database is unreachable."""

    def pool_checked_out(self) -> int:
        """Database connections in use right now (read at metrics scrape time; no I/O)."""

    def notification_listener(self, on_note: Callable[[str], None]) -> Listener | None:
        """Other replicas' wake-ups (PostgreSQL ``LISTEN``; see ``store.notifications``),
        or None where the database has none (SQLite)."""

    # -- definitions -------------------------------------------------------------------
    async def put_definition(self, record: DefinitionRecord) -> tuple[DefinitionRecord, bool]:
        """Store a definition. Returns (stored record, created?).

        The same namespace/name/version with the same ``content_hash`` returns the
        existing record and ``False``; with another hash raises ``DefinitionConflict``.
        """

    async def get_definition(self, namespace: str, name: str, version: str | None = None) -> DefinitionRecord:
        """A definition by version, or the latest (highest semantic version) when ``version`` is None.

        Raises ``DefinitionNotFound``.
        """

    async def list_definitions(self, namespace: str | None = None) -> list[DefinitionRecord]:
        """All definitions (every version), ordered by namespace, name, version."""

    # -- instances ---------------------------------------------------------------------
    async def create_instance(
        self, record: InstanceRecord, checkpoint: Checkpoint | None = None
    ) -> InstanceRecord:
        """Insert a new instance (``row_version`` 1).

        When ``record.lease_owner`` is set the instance is created already claimed by
        that owner (fencing token 1, lease until ``lease_expires_at``). When
        ``checkpoint`` is given, its log rows, bookmarks, timers, outbox rows and new
        instances are written in the same transaction (its instance fields are ignored:
        ``record`` already carries them).
        """

    async def find_instance_by_idempotency_key(self, key: str) -> InstanceRecord | None:
        """The instance started with this idempotency key, if any."""

    async def get_instance(self, instance_id: str) -> InstanceRecord:
        """Raises ``InstanceNotFound``."""

    async def list_instances(
        self,
        *,
        status: InstanceStatus | None = None,
        namespace: str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> InstancePage:
        """Instances newest first, with an opaque cursor stable under concurrent inserts."""

    async def claim_instances(self, owner: str, lease: timedelta, limit: int) -> list[InstanceRecord]:
        """Claim up to ``limit`` runnable instances whose lease is free or expired.

        Runnable: status ``pending`` or ``running``. Each claimed row gets
        ``lease_owner`` = owner, ``lease_expires_at`` = db now + lease and its
        ``fencing_token`` incremented. PostgreSQL uses ``FOR UPDATE SKIP LOCKED``.
        """

    async def claim_instance(self, instance_id: str, owner: str, lease: timedelta) -> InstanceRecord | None:
        """Claim one given instance if it is runnable and its lease is free or expired
        (a lease of ``owner``'s own is not taken again: a run of that owner holds it)."""

    async def renew_lease(self, instance_id: str, owner: str, fencing_token: int, lease: timedelta) -> bool:
        """Extend a lease we hold; False if we lost it."""

    async def release_instance(self, instance_id: str, owner: str, fencing_token: int) -> None:
        """Give a lease back (no-op if we no longer hold it)."""

    async def checkpoint(self, checkpoint: Checkpoint) -> InstanceRecord:
        """Write a checkpoint atomically (see :class:`~flowkeeper.records.Checkpoint`).

        In the same transaction: update the instance (``row_version`` + 1, the lease
        released when ``release_lease``), insert log rows, bookmarks, timers, outbox rows
        and new (child) instances, delete applied and cancelled bookmarks and cancelled
        timers, and consume ``resume_bookmarks`` (each only if not consumed yet) marking
        their instances runnable. If the instance is left ``suspended`` while one of its
        bookmarks is consumed, it is stored as ``running`` instead (it has work to do).
        Raises ``ConcurrencyConflict`` when the version, fencing token or owner does not
        match; nothing is written then.
        """

    # -- bookmarks and timers ----------------------------------------------------------
    async def list_bookmarks(self, instance_id: str, *, consumed: bool | None = None) -> list[BookmarkRecord]:
        """An instance's bookmarks, oldest first; ``consumed`` filters on ``is_consumed``."""

    async def event_candidates(
        self, event_type: str, correlations: Sequence[tuple[str, str]], known_specs: Collection[str]
    ) -> tuple[list[BookmarkRecord], set[str]]:
        """The bookmarks an event of ``event_type`` may resume, found by index, and the
        correlation specs the caller did not know, in one round trip.

        Bookmarks: unconsumed ``event`` bookmarks whose ``event_type`` equals
        ``event_type`` or is NULL, oldest first, those carrying a correlation only when
        their (``correlation_from``, ``correlation_value``) is one of ``correlations``.
        Unknown specs: the distinct ``correlation_from`` of unconsumed bookmarks of the
        type that are not in ``known_specs``. When there are any, the answer may miss
        bookmarks of those specs: evaluate them on the event and ask again.
        """

    async def resume_bookmark(self, bookmark_id: str, payload: JSON) -> bool:
        """Consume a bookmark exactly once and make its instance runnable.

        Returns False when it was already consumed (or does not exist). A
        ``suspended`` instance becomes ``running`` (unless manually suspended: an
        unconsumed ``manual`` bookmark keeps it suspended; the same rule holds for
        every path that consumes bookmarks: timers, checkpoints, events).
        """

    async def next_timer_due(self, instance_ids: Sequence[str] | None = None) -> datetime | None:
        """The earliest timer due time (optionally among some instances)."""

    async def next_timer_and_now(self) -> tuple[datetime | None, datetime]:
        """``next_timer_due()`` and ``now()`` in one round trip (the timer service's poll)."""

    async def fire_due_timers(self, limit: int, now: datetime | None = None) -> list[TimerRecord]:
        """Fire timers due at ``now`` (default: the database clock).

        Each fired timer is deleted and its bookmark consumed with payload
        ``{"timer": id, "firedAt": iso-8601}``, making the instance runnable.
        """

    async def count_due_timers(self) -> int:
        """How many timers are due (database clock) and not fired yet (for metrics)."""

    async def fire_and_claim_timers(
        self, limit: int, owner: str, lease: timedelta, ahead: timedelta = timedelta(0)
    ) -> tuple[list[TimerRecord], list[Delivery]]:
        """``fire_due_timers`` (database clock), then claim the woken instances whose lease is
        free or expired for ``owner``, with what their runs resume from (one ``Delivery``
        per claimed instance). PostgreSQL does all of it in one round trip.

        ``ahead``: also fire timers due within this much of now whose instance nobody
        holds (their ``firedAt`` is their due time). The caller must not resume such an
        instance before the due times of its fired timers; a timer of an instance
        someone else holds never fires before it is due."""

    async def list_timers(self, instance_id: str) -> list[TimerRecord]:
        """An instance's pending timers."""

    # -- instance control (the API's cancel / suspend / resume / retry) -------------------
    async def cancel_instance(self, instance_id: str, *, reason: str | None = None) -> InstanceRecord:
        """Cancel a non-terminal instance and, recursively, its non-terminal children.

        One transaction: each becomes ``cancelled`` (``completed_on`` set, lease cleared,
        ``fencing_token`` + 1 so that a worker still running it has its next checkpoint
        rejected), its bookmarks and timers are deleted, and a ``cancelled`` log row
        (reference ``/``, detail ``{"reason": reason}``) is appended. When the cancelled
        instance is a child its parent is waiting for (``parent_bookmark_id``) and the
        parent is not itself being cancelled, that bookmark is consumed with
        ``{"error": <the DSL runtime error, title "Cancelled">}``.
        Raises ``InstanceNotFound``, or ``InvalidTransition`` when already terminal.
        """

    async def suspend_instance(self, instance_id: str) -> InstanceRecord:
        """Suspend manually: status ``suspended`` with an unconsumed ``manual`` bookmark
        (id ``<instance id>.manual``), lease cleared, ``fencing_token`` + 1, log row
        ``suspended``. While that bookmark is unconsumed, nothing makes the instance
        runnable (consumed event/timer/child bookmarks wait until it is resumed).
        Raises ``InstanceNotFound``, ``InvalidTransition`` (terminal, or already
        manually suspended).
        """

    async def resume_instance(self, instance_id: str) -> InstanceRecord:
        """Undo a manual suspension: the manual bookmark is deleted; the instance becomes
        ``running`` when it has work (it was pending/running before, or one of its
        bookmarks is consumed), else stays ``suspended`` (waiting as before); log row
        ``resumed``. Raises ``InstanceNotFound``, ``InvalidTransition`` (not manually
        suspended).
        """

    async def retry_instance(self, instance_id: str, state: dict[str, JSON] | None) -> InstanceRecord:
        """Make a ``failed`` instance runnable again from ``state`` (prepared by the
        runtime: the failed activity reset): status ``running``, ``error`` and
        ``completed_on`` cleared, lease cleared, ``fencing_token`` + 1, log row
        ``retried``. Raises ``InstanceNotFound``, ``InvalidTransition`` (not failed).
        """

    async def count_instances(self) -> dict[InstanceStatus, int]:
        """How many instances are in each status (for metrics)."""

    # -- events --------------------------------------------------------------------------
    async def record_event(self, event: EventRecord) -> EventRecord | None:
        """Keep a received event; None when an event with the same ``key`` is already kept
        (a duplicate delivery). ``received_on`` is set from the database clock."""

    async def recent_events(self, since: datetime, event_type: str | None = None) -> list[EventRecord]:
        """Kept events received at or after ``since`` (of ``event_type`` if given), oldest first."""

    async def list_events(
        self, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[EventRecord], str | None]:
        """Kept events, newest first, with an opaque keyset cursor."""

    async def deliver_event(self, bookmark_id: str, event_key: str, payload: JSON) -> bool:
        """Consume ``bookmark_id`` with ``payload`` for the event ``event_key``, exactly once.

        In one transaction: False (nothing written) when the bookmark is already
        consumed or gone, or when this event was already delivered to the bookmark's
        instance (``workflow_event_delivery`` (event_key, instance_id) is unique).
        Otherwise the bookmark is consumed, the delivery recorded, the event's
        ``matched`` incremented, and the instance made runnable (``suspended`` ->
        ``running``, unless manually suspended).
        """

    async def deliver_and_claim(
        self, bookmark_id: str, event_key: str, payload: JSON, owner: str, lease: timedelta
    ) -> Delivery:
        """``deliver_event``, then, when the instance is runnable and its lease free or
        expired, claim it as ``claim_instance`` does and read its consumed bookmarks and
        timers. PostgreSQL does all of it in one round trip."""

    async def delete_events(self, received_before: datetime, limit: int = 1000) -> int:
        """Drop kept events (and their deliveries) received before a time; how many."""

    # -- execution log and outbox --------------------------------------------------------
    async def get_log(self, instance_id: str) -> list[LogEntry]:
        """An instance's execution log in order (``seq`` set)."""

    async def list_outbox(self, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxRecord]:
        """Outbox rows, oldest first."""

    # -- cleanup (retention; each call one bounded batch in one transaction) ----------------
    async def delete_finished_instances(self, completed_before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` terminal instances (completed, failed, cancelled) whose
        ``completed_on`` is before a time, oldest first, with their bookmarks, timers,
        execution log and event deliveries (their outbox rows have their own retention).
        An instance with a child that is not terminal is kept. Returns how many instances."""

    async def delete_log_entries(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` execution-log rows with ``at`` before a time, of terminal
        instances only (a live instance's log is never touched). Returns how many."""

    async def delete_delivered_outbox(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` outbox rows with status ``delivered`` delivered (and
        created) before a time; pending, processing and dead rows stay. Returns how many."""

    # -- outbox processor (delivery of emitted events to external sinks) ------------------
    # A row is due when ``pending`` with ``next_attempt_at`` <= db now, or ``processing``
    # with an expired claim (its ``next_attempt_at`` passed: the claimer crashed or hangs).
    # The settling writes succeed only while the row is still ``processing`` and
    # ``claimed_by`` the caller; each returns False otherwise (nothing written).
    async def claim_outbox(self, owner: str, limit: int, claim_timeout: timedelta) -> list[OutboxRecord]:
        """Claim up to ``limit`` due rows, most overdue first: each becomes ``processing``
        with ``claimed_by`` = owner and ``next_attempt_at`` = db now + claim_timeout (when
        the claim runs out). PostgreSQL uses ``FOR UPDATE SKIP LOCKED``, so concurrent
        claimers never get the same row. Returned oldest (``created_on``) first."""

    async def complete_outbox(self, outbox_id: str, owner: str, delivered_to: Sequence[str]) -> bool:
        """Mark a claimed row ``delivered`` (``delivered_on`` = db now, attempts + 1),
        recording the sinks it reached."""

    async def complete_outbox_many(self, owner: str, delivered: Mapping[str, Sequence[str]]) -> set[str]:
        """``complete_outbox`` for many rows (id -> sinks reached) in one statement per
        distinct set of sinks; returns the ids that were still claimed by ``owner``."""

    async def retry_outbox(
        self, outbox_id: str, owner: str, delivered_to: Sequence[str], error: str, retry_in: timedelta
    ) -> bool:
        """Give a claimed row back: ``pending``, attempts + 1, ``last_error`` = error, the
        sinks reached so far kept, due at db now + ``retry_in``."""

    async def dead_letter_outbox(
        self, outbox_id: str, owner: str, delivered_to: Sequence[str], error: str
    ) -> bool:
        """Give up on a claimed row: ``dead``, attempts + 1, ``last_error`` = error."""

    async def requeue_outbox(self, outbox_id: str) -> OutboxRecord:
        """A ``dead`` row back to ``pending``: attempts 0, due now, claim cleared (the sinks
        it reached are kept, so only the others get it again). Raises
        ``OutboxEventNotFound``, or ``InvalidTransition`` when the row is not dead."""

    async def get_outbox(self, outbox_id: str) -> OutboxRecord:
        """One outbox row; raises ``OutboxEventNotFound``."""

    async def count_outbox(self) -> dict[OutboxStatus, int]:
        """How many rows are ``pending``, ``processing`` and ``dead`` (each key present;
        ``delivered`` rows are not counted)."""

    async def page_outbox(
        self, *, status: OutboxStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[OutboxRecord], str | None]:
        """Outbox rows oldest first (optionally of one status), with an opaque keyset cursor;
        ``ValueError`` for a cursor this store did not issue."""

    # -- schedules (DSL ``schedule``; one row per scheduled namespace/name) ------------------
    async def put_schedule(
        self, namespace: str, name: str, version: str, schedule: ScheduleRecord | None
    ) -> ScheduleRecord | None:
        """Give ``namespace/name`` the schedule of ``version`` (None: no schedule), but only
        when ``version`` is its latest deployed version (SemVer, as ``get_definition``);
        otherwise nothing changes. One transaction. A schedule of the same kind and spec
        as the stored one keeps its ``next_due``, last instance and pending events (only
        the version moves on). Returns the schedule stored afterwards."""

    async def get_schedule(self, namespace: str, name: str) -> ScheduleRecord | None:
        """The schedule of ``namespace/name``, if any."""

    async def list_schedules(self, kind: ScheduleKind | None = None) -> list[ScheduleRecord]:
        """Every schedule (optionally of one kind), by namespace and name."""

    async def due_schedules(self, limit: int, now: datetime | None = None) -> list[ScheduleRecord]:
        """Up to ``limit`` schedules with ``next_due`` at or before ``now`` (default: the
        database clock), earliest first."""

    async def next_schedule_due(self) -> datetime | None:
        """The earliest ``next_due`` of any schedule."""

    async def finished_after_schedules(self, limit: int) -> list[tuple[ScheduleRecord, datetime | None]]:
        """Up to ``limit`` ``after`` schedules without ``next_due`` whose last instance is
        terminal or gone, each with that instance's ``completed_on`` (None when gone)."""

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_due: datetime | None,
        instance: InstanceRecord | None = None,
        *,
        pending: JSON = None,
    ) -> bool:
        """In one transaction: if the stored schedule's ``revision`` is still
        ``schedule.revision``, set its ``next_due`` and ``pending`` (and, with
        ``instance``, ``last_instance_id``), bump the revision and insert ``instance``
        (as ``create_instance`` without a checkpoint). False, and nothing written, when
        another writer changed the schedule first: of several replicas firing the same
        tick, exactly one starts its instance."""
