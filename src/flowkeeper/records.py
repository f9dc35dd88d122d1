"""Records: the rows Flowkeeper keeps, as immutable values with documented status enums.

The store reads and writes these; the runtime builds them; the API shows them. None of
them knows how it is stored. JSON-valued fields hold plain JSON data (dict, list, str,
int, float, bool, None). Timestamps are timezone-aware UTC ``datetime`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

JSON = Any
"""A JSON value: dict, list, str, int, float, bool or None."""


class InstanceStatus(StrEnum):
    """Where an instance is in its life.

    - ``pending``: accepted, not yet picked up by a worker.
    - ``running``: being run, or runnable (a worker will claim it).
    - ``suspended``: waiting on one or more bookmarks (events, timers, a child
      instance, a manual resume); the DSL's ``waiting`` and ``suspended`` phases.
    - ``completed``: ran to the end; ``output`` holds the result.
    - ``failed``: the DSL's ``faulted``; ``error`` holds the error object.
    - ``cancelled``: stopped on request before the end.

    The last three are terminal: nothing changes an instance after them.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.CANCELLED)


#: Statuses a worker may claim (under a free or expired lease).
RUNNABLE_STATUSES = (InstanceStatus.PENDING, InstanceStatus.RUNNING)


class BookmarkKind(StrEnum):
    """What a bookmark waits for.

    - ``event``: a CloudEvent matching the bookmark's filter (``listen``).
    - ``timer``: a due time (``wait``, retry back-off, timeouts); paired with a timer row.
    - ``child``: the end of a child instance (``run: workflow``).
    - ``manual``: a manual resume through the API.
    """

    EVENT = "event"
    TIMER = "timer"
    CHILD = "child"
    MANUAL = "manual"


class OutboxStatus(StrEnum):
    """Delivery state of an outbox row.

    - ``pending``: waiting for its next delivery attempt (``next_attempt_at``).
    - ``processing``: claimed by an outbox processor.
    - ``delivered``: delivered to every sink.
    - ``dead``: gave up after the last attempt; ``last_error`` says why; can be re-queued.
    """

    PENDING = "pending"
    PROCESSING = "processing"
    DELIVERED = "delivered"
    DEAD = "dead"


class LogEvent(StrEnum):
    """Execution-log event names (one row per activity or instance event)."""

    STARTED = "started"
    COMPLETED = "completed"
    FAULTED = "faulted"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    RETRIED = "retried"
    SUSPENDED = "suspended"
    RESUMED = "resumed"


@dataclass(frozen=True, slots=True)
class DefinitionRecord:
    """A deployed workflow definition; immutable once stored."""

    namespace: str
    name: str
    version: str
    document: dict[str, JSON]
    source: str
    content_hash: str
    created_on: datetime | None = None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One run of a definition.

    ``state`` is the interpreter's serialised machine (frames, data, ``$context``);
    ``row_version`` is the optimistic-concurrency counter; ``lease_owner``,
    ``lease_expires_at`` and ``fencing_token`` guard who may write it.
    """

    id: str
    namespace: str
    name: str
    version: str
    status: InstanceStatus
    input: JSON = None
    output: JSON = None
    error: dict[str, JSON] | None = None
    state: dict[str, JSON] | None = None
    current_activity_id: str | None = None
    parent_id: str | None = None
    parent_bookmark_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    row_version: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    fencing_token: int = 0
    created_on: datetime | None = None
    updated_on: datetime | None = None
    started_on: datetime | None = None
    completed_on: datetime | None = None


@dataclass(frozen=True, slots=True)
class BookmarkRecord:
    """A persisted wait point. Consumed exactly once: ``is_consumed`` flips with its ``payload``.

    A consumed bookmark stays until the engine has applied its payload (in the
    instance's next checkpoint, which deletes it).
    """

    id: str
    instance_id: str
    activity_id: str
    kind: BookmarkKind
    filter: dict[str, JSON] | None = None
    event_type: str | None = None
    #: For an event bookmark whose one filter correlates on known values: the
    #: ``from`` expressions and the expected values (canonical JSON objects keyed by
    #: correlation name), so that an event is matched by index, not by a scan.
    correlation_from: str | None = None
    correlation_value: str | None = None
    is_consumed: bool = False
    payload: JSON = None
    created_on: datetime | None = None
    consumed_on: datetime | None = None


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """A persisted due time; firing it consumes ``bookmark_id``."""

    id: str
    instance_id: str
    bookmark_id: str
    activity_id: str
    due_at: datetime
    created_on: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """An event to deliver after the transaction that wrote it has committed.

    ``attempts`` counts delivery passes made (the successful one included);
    ``next_attempt_at`` is when a ``pending`` row is due, or when the claim of a
    ``processing`` row runs out (another processor may take it then). ``delivered_to``
    names the sinks the event has reached already (a retry goes only to the others);
    ``claimed_by`` is the processor that claimed the row last.
    """

    id: str
    instance_id: str | None
    activity_id: str | None
    event: dict[str, JSON]
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    created_on: datetime | None = None
    delivered_on: datetime | None = None
    delivered_to: tuple[str, ...] = ()
    claimed_by: str | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One execution-log row: an activity (task) or instance event."""

    instance_id: str
    reference: str
    name: str | None
    task_type: str | None
    event: LogEvent
    at: datetime
    detail: dict[str, JSON] | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A CloudEvent received by the engine, kept for ``events.retention`` so that a
    ``listen`` that starts waiting shortly after its event arrived still gets it.

    ``key`` identifies the event (CloudEvents: ``source`` + ``id`` are unique);
    ``matched`` counts the bookmarks it resumed.
    """

    key: str
    id: str
    source: str
    type: str
    event: dict[str, JSON]
    received_on: datetime | None = None
    matched: int = 0


@dataclass(frozen=True, slots=True)
class BookmarkResume:
    """Consume another bookmark (maybe of another instance) in the same transaction."""

    bookmark_id: str
    payload: JSON


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything one step of an instance changes, written in one transaction.

    The write succeeds only while ``expected_row_version`` and ``fencing_token`` still
    match the stored instance (and the lease owner is ``lease_owner``); otherwise the
    store raises ``ConcurrencyConflict`` and nothing is written.
    """

    instance_id: str
    expected_row_version: int
    fencing_token: int
    lease_owner: str
    status: InstanceStatus
    state: dict[str, JSON] | None
    output: JSON = None
    error: dict[str, JSON] | None = None
    current_activity_id: str | None = None
    started_on: datetime | None = None
    completed_on: datetime | None = None
    log: tuple[LogEntry, ...] = ()
    new_bookmarks: tuple[BookmarkRecord, ...] = ()
    applied_bookmarks: tuple[str, ...] = ()
    cancelled_bookmarks: tuple[str, ...] = ()
    new_timers: tuple[TimerRecord, ...] = ()
    cancelled_timers: tuple[str, ...] = ()
    outbox: tuple[OutboxRecord, ...] = ()
    new_instances: tuple[InstanceRecord, ...] = ()
    resume_bookmarks: tuple[BookmarkResume, ...] = ()
    release_lease: bool = False
