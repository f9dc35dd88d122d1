"""The persistence port: everything the rest of Flowkeeper may ask of a database.

Adapters (SQLite, PostgreSQL) implement :class:`Store`; ``create_store(url)`` picks one.
Every method is a coroutine; every write is one transaction. Driver errors are wrapped
in :class:`~flowkeeper.errors.StoreError` subclasses with the cause kept.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        """Claim one given instance if it is runnable and its lease is free, expired or already ours."""

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

    async def find_event_bookmarks(
        self, event_type: str, correlations: Sequence[tuple[str, str]] | None = None
    ) -> list[BookmarkRecord]:
        """Unconsumed ``event`` bookmarks whose ``event_type`` equals ``event_type`` or is NULL,
        oldest first. With ``correlations`` ((``correlation_from``, ``correlation_value``)
        pairs), a bookmark that carries a correlation is returned only when its pair is
        one of them (bookmarks without one always are)."""

    async def correlation_specs(self, event_type: str) -> list[str]:
        """The distinct ``correlation_from`` values of unconsumed event bookmarks of a type."""

    async def resume_bookmark(self, bookmark_id: str, payload: JSON) -> bool:
        """Consume a bookmark exactly once and make its instance runnable.

        Returns False when it was already consumed (or does not exist). A
        ``suspended`` instance becomes ``running`` (unless manually suspended: an
        unconsumed ``manual`` bookmark keeps it suspended; the same rule holds for
        every path that consumes bookmarks: timers, checkpoints, events).
        """

    async def next_timer_due(self, instance_ids: Sequence[str] | None = None) -> datetime | None:
        """The earliest timer due time (optionally among some instances)."""

    async def fire_due_timers(self, limit: int, now: datetime | None = None) -> list[TimerRecord]:
        """Fire timers due at ``now`` (default: the database clock).

        Each fired timer is deleted and its bookmark consumed with payload
        ``{"timer": id, "firedAt": iso-8601}``, making the instance runnable.
        """

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

    async def delete_events(self, received_before: datetime, limit: int = 1000) -> int:
        """Drop kept events (and their deliveries) received before a time; how many."""

    # -- execution log and outbox --------------------------------------------------------
    async def get_log(self, instance_id: str) -> list[LogEntry]:
        """An instance's execution log in order (``seq`` set)."""

    async def list_outbox(self, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxRecord]:
        """Outbox rows, oldest first."""
