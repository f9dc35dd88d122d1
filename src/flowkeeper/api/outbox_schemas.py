"""Response bodies of the outbox routes (events emitted by workflows, on their way to sinks)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from flowkeeper.api.schemas import ApiModel, JSONValue
from flowkeeper.records import OutboxRecord, OutboxStatus


class OutboxEventOut(ApiModel):
    """An event a workflow emitted, and how its delivery to the configured sinks stands."""

    id: str = Field(description="The outbox row's id: the CloudEvent's `id`, the same at every delivery.")
    instance_id: str | None = Field(description="The instance that emitted it.")
    activity_id: str | None = Field(description="The `emit` task that wrote it.")
    status: OutboxStatus = Field(
        description="`pending` (waiting for its next attempt), `processing` (claimed by a processor), "
        "`delivered` (to every sink) or `dead` (gave up; re-queue it)."
    )
    attempts: int = Field(description="Delivery passes made so far.")
    next_attempt_at: datetime | None = Field(
        description="`pending`: when it is due; `processing`: when the processor's claim runs out."
    )
    last_error: str | None = Field(description="Why the last attempt failed, per sink.")
    delivered_to: list[str] = Field(description="The sinks that have the event (a retry skips them).")
    claimed_by: str | None = Field(description="The processor that claimed it last.")
    created_on: datetime | None
    delivered_on: datetime | None
    event: dict[str, JSONValue] = Field(description="The CloudEvent, as delivered.")

    @classmethod
    def from_record(cls, record: OutboxRecord) -> OutboxEventOut:
        """The API view of an outbox row."""
        return cls(
            id=record.id,
            instance_id=record.instance_id,
            activity_id=record.activity_id,
            status=record.status,
            attempts=record.attempts,
            next_attempt_at=record.next_attempt_at,
            last_error=record.last_error,
            delivered_to=list(record.delivered_to),
            claimed_by=record.claimed_by,
            created_on=record.created_on,
            delivered_on=record.delivered_on,
            event=record.event,
        )


class OutboxEventList(ApiModel):
    """One page of outbox events, oldest first; pass ``nextCursor`` back as ``cursor`` for the next."""

    items: list[OutboxEventOut]
    next_cursor: str | None
