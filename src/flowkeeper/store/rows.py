"""Translation between table rows and records, plus the small pure helpers of the store.

Everything here is I/O-free: rows in, records out (and back), semantic-version ordering
of definitions, and the opaque listing cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Row

from flowkeeper.records import (
    BookmarkKind,
    BookmarkRecord,
    DefinitionRecord,
    EventRecord,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
    LogEvent,
    OutboxRecord,
    OutboxStatus,
    TimerRecord,
)
from flowkeeper.schedule_records import ScheduleKind, ScheduleRecord

# -- rows -> records --------------------------------------------------------------------


class MappedRow(Protocol):
    """A result row, or anything else whose ``_mapping`` reads columns by name (a
    composite value PostgreSQL returned for a table's row type)."""

    @property
    def _mapping(self) -> Mapping[Any, Any]: ...


def definition(row: Row[Any]) -> DefinitionRecord:
    m = row._mapping
    return DefinitionRecord(
        namespace=m["namespace"],
        name=m["name"],
        version=m["version"],
        document=m["document"],
        source=m["source"],
        content_hash=m["content_hash"],
        created_on=m["created_on"],
    )


def instance(row: MappedRow) -> InstanceRecord:
    m = row._mapping
    return InstanceRecord(
        id=m["id"],
        namespace=m["namespace"],
        name=m["name"],
        version=m["version"],
        status=InstanceStatus(m["status"]),
        input=m["input"],
        output=m["output"],
        error=m["error"],
        state=m["state"],
        current_activity_id=m["current_activity_id"],
        parent_id=m["parent_id"],
        parent_bookmark_id=m["parent_bookmark_id"],
        idempotency_key=m["idempotency_key"],
        request_hash=m["request_hash"],
        row_version=m["row_version"],
        lease_owner=m["lease_owner"],
        lease_expires_at=m["lease_expires_at"],
        fencing_token=m["fencing_token"],
        created_on=m["created_on"],
        updated_on=m["updated_on"],
        started_on=m["started_on"],
        completed_on=m["completed_on"],
    )


def bookmark(row: MappedRow) -> BookmarkRecord:
    m = row._mapping
    return BookmarkRecord(
        id=m["id"],
        instance_id=m["instance_id"],
        activity_id=m["activity_id"],
        kind=BookmarkKind(m["kind"]),
        filter=m["filter"],
        event_type=m["event_type"],
        correlation_from=m["correlation_from"],
        correlation_value=m["correlation_value"],
        is_consumed=bool(m["is_consumed"]),
        payload=m["payload"],
        created_on=m["created_on"],
        consumed_on=m["consumed_on"],
    )


def timer(row: MappedRow) -> TimerRecord:
    m = row._mapping
    return TimerRecord(
        id=m["id"],
        instance_id=m["instance_id"],
        bookmark_id=m["bookmark_id"],
        activity_id=m["activity_id"],
        due_at=m["due_at"],
        created_on=m["created_on"],
    )


def outbox(row: Row[Any]) -> OutboxRecord:
    m = row._mapping
    return OutboxRecord(
        id=m["id"],
        instance_id=m["instance_id"],
        activity_id=m["activity_id"],
        event=m["event"],
        status=OutboxStatus(m["status"]),
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        created_on=m["created_on"],
        delivered_on=m["delivered_on"],
        delivered_to=tuple(m["delivered_to"] or ()),
        claimed_by=m["claimed_by"],
    )


def schedule(row: MappedRow) -> ScheduleRecord:
    m = row._mapping
    return ScheduleRecord(
        namespace=m["namespace"],
        name=m["name"],
        version=m["version"],
        kind=ScheduleKind(m["kind"]),
        spec=m["spec"],
        next_due=m["next_due"],
        last_instance_id=m["last_instance_id"],
        pending=m["pending"],
        revision=m["revision"],
        updated_on=m["updated_on"],
    )


def log_entry(row: Row[Any]) -> LogEntry:
    m = row._mapping
    return LogEntry(
        instance_id=m["instance_id"],
        reference=m["reference"],
        name=m["name"],
        task_type=m["task_type"],
        event=LogEvent(m["event"]),
        at=m["at"],
        detail=m["detail"],
        seq=m["seq"],
    )


def event(row: Row[Any]) -> EventRecord:
    m = row._mapping
    return EventRecord(
        key=m["key"],
        id=m["id"],
        source=m["source"],
        type=m["type"],
        event=m["event"],
        received_on=m["received_on"],
        matched=m["matched"],
    )


# -- records -> bind parameters ------------------------------------------------------------
# Keys are prefixed ``p_`` so they never collide with column names: SQLAlchemy refuses
# a bindparam named like a column of the table an INSERT/UPDATE writes.


def instance_params(record: InstanceRecord, log_seq: int) -> dict[str, Any]:
    if record.lease_owner is not None and record.lease_expires_at is None:
        raise ValueError(f"instance {record.id}: lease_owner given without lease_expires_at")
    return {
        "p_id": record.id,
        "p_namespace": record.namespace,
        "p_name": record.name,
        "p_version": record.version,
        "p_status": record.status.value,
        "p_input": record.input,
        "p_output": record.output,
        "p_error": record.error,
        "p_state": record.state,
        "p_current_activity_id": record.current_activity_id,
        "p_parent_id": record.parent_id,
        "p_parent_bookmark_id": record.parent_bookmark_id,
        "p_idempotency_key": record.idempotency_key,
        "p_request_hash": record.request_hash,
        "p_lease_owner": record.lease_owner,
        "p_lease_expires_at": record.lease_expires_at if record.lease_owner is not None else None,
        # A row created already claimed holds the first fencing token.
        "p_fencing_token": 1 if record.lease_owner is not None else 0,
        "p_log_seq": log_seq,
        "p_created_on": record.created_on,
        "p_started_on": record.started_on,
        "p_completed_on": record.completed_on,
    }


def bookmark_params(record: BookmarkRecord) -> dict[str, Any]:
    return {
        "p_id": record.id,
        "p_instance_id": record.instance_id,
        "p_activity_id": record.activity_id,
        "p_kind": record.kind.value,
        "p_filter": record.filter,
        "p_event_type": record.event_type,
        "p_correlation_from": record.correlation_from,
        "p_correlation_value": record.correlation_value,
        "p_is_consumed": record.is_consumed,
        "p_payload": record.payload,
        "p_created_on": record.created_on,
        "p_consumed_on": record.consumed_on,
    }


def timer_params(record: TimerRecord) -> dict[str, Any]:
    return {
        "p_id": record.id,
        "p_instance_id": record.instance_id,
        "p_bookmark_id": record.bookmark_id,
        "p_activity_id": record.activity_id,
        "p_due_at": record.due_at,
        "p_created_on": record.created_on,
    }


def outbox_params(record: OutboxRecord) -> dict[str, Any]:
    return {
        "p_id": record.id,
        "p_instance_id": record.instance_id,
        "p_activity_id": record.activity_id,
        "p_event": record.event,
        "p_status": record.status.value,
        "p_attempts": record.attempts,
        "p_next_attempt_at": record.next_attempt_at,
        "p_last_error": record.last_error,
        "p_created_on": record.created_on,
        "p_delivered_on": record.delivered_on,
        "p_delivered_to": list(record.delivered_to) or None,
        "p_claimed_by": record.claimed_by,
    }


def log_params(entry: LogEntry, instance_id: str, seq: int) -> dict[str, Any]:
    return {
        "p_instance_id": instance_id,
        "p_seq": seq,
        "p_reference": entry.reference,
        "p_name": entry.name,
        "p_task_type": entry.task_type,
        "p_event": entry.event.value,
        "p_at": entry.at,
        "p_detail": entry.detail,
    }


def event_params(record: EventRecord) -> dict[str, Any]:
    return {
        "p_key": record.key,
        "p_id": record.id,
        "p_source": record.source,
        "p_type": record.type,
        "p_event": record.event,
        "p_matched": record.matched,
    }


def log_columns(entries: Sequence[LogEntry]) -> dict[str, list[Any]]:
    """Log entries as one array per column (for a single multi-row INSERT from ``unnest``)."""
    return {
        "p_log_reference": [e.reference for e in entries],
        "p_log_name": [e.name for e in entries],
        "p_log_task_type": [e.task_type for e in entries],
        "p_log_event": [e.event.value for e in entries],
        "p_log_at": [e.at for e in entries],
        "p_log_detail": [e.detail for e in entries],
    }


# -- semantic versions ---------------------------------------------------------------------

_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)


def version_key(version: str) -> tuple[Any, ...]:
    """A sort key ordering versions by SemVer 2.0 precedence.

    Non-SemVer strings sort below every SemVer version, among themselves by string
    order. A pre-release sorts below its release; pre-release identifiers compare
    numerically when numeric, numeric ones below alphanumeric ones.
    """
    match = _SEMVER.match(version)
    if match is None:
        return (0, version)
    pre = match.group("pre")
    pre_key: tuple[Any, ...] = (
        (1,) if pre is None else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    )
    return (1, int(match.group("major")), int(match.group("minor")), int(match.group("patch")), pre_key)


# -- listing cursor ------------------------------------------------------------------------


def encode_cursor(created_on: datetime, instance_id: str) -> str:
    """Opaque cursor for keyset pagination: the last row's (created_on, id)."""
    raw = json.dumps([created_on.isoformat(), instance_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of :func:`encode_cursor`; ``ValueError`` when the cursor was not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, instance_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    if moment.tzinfo is None or not isinstance(instance_id, str) or "\x00" in instance_id:
        raise ValueError(f"invalid cursor {cursor!r}")
    try:
        # A timestamp a database can store: in UTC, within datetime's range.
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    return moment, instance_id
