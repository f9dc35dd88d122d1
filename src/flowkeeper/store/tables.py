"""The relational schema, as SQLAlchemy Core tables (the single source the migrations must match).

One table per record of :mod:`flowkeeper.records`, snake_case, columns named after the
record fields. JSON columns are JSONB on PostgreSQL and JSON text on SQLite; timestamps
are ``timestamptz`` on PostgreSQL and UTC text on SQLite, always read back tz-aware UTC.

``tests/migration/test_schema_drift.py`` checks that ``migrate()`` on an empty database
produces exactly these tables, columns and indexes: change both together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

#: Names every constraint deterministically so migrations and drift checks agree.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timestamp type: values are stored as fixed-width UTC text (so string
    comparison is time comparison) and tagged UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value would be silently misread as UTC on one backend and as local
            # time on another; records promise aware datetimes, so insist on it.
            raise ValueError(f"naive datetime {value.isoformat()} (records carry aware UTC times)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSON text on SQLite, JSONB on PostgreSQL; Python ``None`` is stored as SQL NULL."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _id(name: str = "id", **kw: Any) -> Column[str]:
    return Column(name, String(255), **kw)


workflow_definition = Table(
    "workflow_definition",
    metadata,
    Column("namespace", String(255), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("document", json_type(), nullable=False),
    Column("source", Text, nullable=False),
    Column("content_hash", String(128), nullable=False),
    Column("created_on", UTCDateTime, nullable=False),
)

workflow_instance = Table(
    "workflow_instance",
    metadata,
    _id(primary_key=True),
    Column("namespace", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", json_type()),
    Column("output", json_type()),
    Column("error", json_type()),
    Column("state", json_type()),
    Column("current_activity_id", Text),
    _id("parent_id"),
    _id("parent_bookmark_id"),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(128)),
    Column("row_version", Integer, nullable=False),
    Column("lease_owner", String(255)),
    Column("lease_expires_at", UTCDateTime),
    Column("fencing_token", BigInteger, nullable=False),
    # Highest execution-log seq written so far: the checkpoint UPDATE bumps it, so log
    # rows get their numbers without a SELECT max(seq).
    Column("log_seq", Integer, nullable=False),
    Column("created_on", UTCDateTime, nullable=False),
    Column("updated_on", UTCDateTime, nullable=False),
    Column("started_on", UTCDateTime),
    Column("completed_on", UTCDateTime),
)


def _instance_ref() -> Column[str]:
    """The owning instance; its rows go when the instance goes (cleanup deletes instances)."""
    return Column(
        "instance_id", String(255), ForeignKey("workflow_instance.id", ondelete="CASCADE"), nullable=False
    )


workflow_bookmark = Table(
    "workflow_bookmark",
    metadata,
    _id(primary_key=True),
    _instance_ref(),
    Column("activity_id", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("filter", json_type()),
    Column("event_type", String(255)),
    Column("is_consumed", Boolean, nullable=False),
    Column("payload", json_type()),
    Column("created_on", UTCDateTime, nullable=False),
    Column("consumed_on", UTCDateTime),
    # Added by 0003 (columns keep the order in which migrations add them).
    Column("correlation_from", Text),
    Column("correlation_value", Text),
)

workflow_timer = Table(
    "workflow_timer",
    metadata,
    _id(primary_key=True),
    _instance_ref(),
    _id("bookmark_id", nullable=False),
    Column("activity_id", Text, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("created_on", UTCDateTime, nullable=False),
)

workflow_outbox = Table(
    "workflow_outbox",
    metadata,
    _id(primary_key=True),
    # No foreign key: outbox rows are delivered (and kept for their own retention)
    # independently of the instance that wrote them.
    _id("instance_id"),
    Column("activity_id", Text),
    Column("event", json_type(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_on", UTCDateTime, nullable=False),
    Column("delivered_on", UTCDateTime),
    # Added by 0004: the sink names reached so far (a retry skips them; NULL: none) and
    # the processor that claimed the row (its claim ends at next_attempt_at).
    Column("delivered_to", json_type()),
    Column("claimed_by", Text),
)

workflow_execution_log = Table(
    "workflow_execution_log",
    metadata,
    # Surrogate key: the log is append-only and large; (instance_id, seq) is the
    # natural order but a narrow integer key keeps the primary index small.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    _instance_ref(),
    Column("seq", Integer, nullable=False),
    Column("reference", Text, nullable=False),
    Column("name", Text),
    Column("task_type", String(64)),
    Column("event", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("detail", json_type()),
)

workflow_event = Table(
    "workflow_event",
    metadata,
    # CloudEvents: source + id identify an event; the key is built from them by the caller.
    Column("key", Text, primary_key=True),
    Column("id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("event", json_type(), nullable=False),
    Column("received_on", UTCDateTime, nullable=False),
    # How many bookmarks the event resumed (one per delivery row written).
    Column("matched", Integer, nullable=False),
)

workflow_event_delivery = Table(
    "workflow_event_delivery",
    metadata,
    # One row per (event, instance): an event resumes at most one bookmark of an instance.
    Column("event_key", Text, ForeignKey("workflow_event.key", ondelete="CASCADE"), primary_key=True),
    Column(
        "instance_id",
        String(255),
        ForeignKey("workflow_instance.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _id("bookmark_id", nullable=False),
    Column("delivered_on", UTCDateTime, nullable=False),
)

workflow_schedule = Table(
    "workflow_schedule",
    metadata,
    # Added by 0005: the DSL ``schedule`` of the latest deployed version of a workflow.
    Column("namespace", String(255), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("spec", json_type(), nullable=False),
    # The next tick; NULL for ``on`` and for ``after`` while its last run goes on.
    Column("next_due", UTCDateTime),
    _id("last_instance_id"),
    # ``on: all``: the incomplete event sets.
    Column("pending", json_type()),
    # Bumped by every write; each change is conditional on the revision it was read at.
    Column("revision", Integer, nullable=False),
    Column("updated_on", UTCDateTime, nullable=False),
)
# The scheduler's "what is due" and "when is the next tick".
Index("ix_workflow_schedule_next_due", workflow_schedule.c.next_due)

_i, _b, _t, _o, _l, _e, _d = (
    workflow_instance.c,
    workflow_bookmark.c,
    workflow_timer.c,
    workflow_outbox.c,
    workflow_execution_log.c,
    workflow_event.c,
    workflow_event_delivery.c,
)
_RUNNABLE = ("pending", "running")
_UNDELIVERED = ("pending", "processing")

# The guide's "critical indexes", in snake_case.
Index(
    "ix_workflow_instance_status_created_on",
    _i.status,
    _i.created_on,
    postgresql_include=["id", "current_activity_id"],
)
Index(
    "ix_workflow_bookmark_processing",
    _b.instance_id,
    _b.activity_id,
    _b.is_consumed,
    postgresql_where=_b.is_consumed == false(),
    sqlite_where=_b.is_consumed == false(),
)
Index(
    "ix_workflow_outbox_processing",
    _o.status,
    _o.next_attempt_at,
    postgresql_where=_o.status.in_(_UNDELIVERED),
    sqlite_where=_o.status.in_(_UNDELIVERED),
)

# What the store's own queries need.
# claim_instances: only runnable rows are indexed, ordered by lease expiry (NULL = free).
Index(
    "ix_workflow_instance_claim",
    _i.status,
    _i.lease_expires_at,
    postgresql_where=_i.status.in_(_RUNNABLE),
    sqlite_where=_i.status.in_(_RUNNABLE),
)
# list_instances: keyset pagination newest first when no status is given. (Every index
# here is rewritten by each claim and checkpoint, so there is deliberately none for the
# rarer namespace/name filter.)
Index("ix_workflow_instance_created_on_id", _i.created_on, _i.id)
Index("ix_workflow_instance_parent_id", _i.parent_id)
Index("ux_workflow_instance_idempotency_key", _i.idempotency_key, unique=True)
# Foreign-key side of the cascades and the per-instance listings.
Index("ix_workflow_bookmark_instance_id", _b.instance_id)
Index(
    "ix_workflow_bookmark_event_type",
    _b.event_type,
    postgresql_where=_b.is_consumed == false(),
    sqlite_where=_b.is_consumed == false(),
)
# An event finds the bookmarks waiting for its correlation values by index.
Index(
    "ix_workflow_bookmark_correlation",
    _b.event_type,
    _b.correlation_from,
    _b.correlation_value,
    postgresql_where=_b.is_consumed == false(),
    sqlite_where=_b.is_consumed == false(),
)
Index("ix_workflow_timer_due_at", _t.due_at)
Index("ix_workflow_timer_instance_id", _t.instance_id)
Index("ux_workflow_execution_log_instance_id_seq", _l.instance_id, _l.seq, unique=True)
Index("ix_workflow_outbox_created_on", _o.created_on)
# Dead letters, oldest first: few rows, listed and counted without scanning delivered ones.
Index(
    "ix_workflow_outbox_dead",
    _o.created_on,
    _o.id,
    postgresql_where=_o.status == "dead",
    sqlite_where=_o.status == "dead",
)
# recent_events (a listen that starts late looks back for its type); retention cleanup.
Index("ix_workflow_event_type_received_on", _e.type, _e.received_on)
Index("ix_workflow_event_received_on", _e.received_on)
# The instance side of the delivery cascade (the primary key serves the event side).
Index("ix_workflow_event_delivery_instance_id", _d.instance_id)
