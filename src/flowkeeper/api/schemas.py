"""Request and response bodies of the REST API: pydantic models with camelCase aliases.

Every model here is what the OpenAPI document shows; the routes build responses from
records with the ``from_*`` constructors, so the record layer never learns about JSON
field names. Identifier patterns keep what reaches the database printable (no NUL or
control characters, which PostgreSQL refuses) and URL-safe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from flowkeeper.records import (
    BookmarkKind,
    BookmarkRecord,
    DefinitionRecord,
    EventRecord,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
    LogEvent,
)

#: The DSL's own pattern for ``document.namespace`` and ``document.name``.
NAME_PATTERN = r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
#: Versions as the store keeps them (semantic versions, looser here: a lookup of a
#: version that cannot exist answers 404).
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$"
#: Instance ids: client-chosen ones and the engine's (UUIDs, ``<parent>.<n>`` for children).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~:-]{0,254}$"

Namespace = Annotated[str, Field(pattern=NAME_PATTERN, examples=["orders"])]
Name = Annotated[str, Field(pattern=NAME_PATTERN, examples=["approve-order"])]
Version = Annotated[str, Field(pattern=VERSION_PATTERN, examples=["1.0.0"])]
InstanceId = Annotated[str, Field(pattern=ID_PATTERN, examples=["0190c8a4-6a55-7cc2-9c1e-1f4f0a6d9b31"])]

JSONValue = Any
"""Any JSON value."""


class ApiModel(BaseModel):
    """Base of every body: camelCase on the wire, unknown fields refused in requests."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# -- definitions --------------------------------------------------------------------------------


class DefinitionOut(ApiModel):
    """A deployed workflow definition."""

    namespace: str
    name: str
    version: str
    dsl: str = Field(description="The DSL version the document is written in (`document.dsl`).")
    document: dict[str, JSONValue] = Field(description="The DSL document as JSON.")
    content_hash: str = Field(description="SHA-256 of the document's canonical JSON.")
    created_on: datetime | None

    @classmethod
    def from_record(cls, record: DefinitionRecord) -> DefinitionOut:
        """The API view of a definition record."""
        meta = record.document.get("document")
        dsl = meta.get("dsl") if isinstance(meta, dict) else None
        return cls(
            namespace=record.namespace,
            name=record.name,
            version=record.version,
            dsl=str(dsl) if dsl is not None else "",
            document=record.document,
            content_hash=record.content_hash,
            created_on=record.created_on,
        )


class DefinitionList(ApiModel):
    """Every version of every definition (optionally of one namespace)."""

    items: list[DefinitionOut]


# -- instances ----------------------------------------------------------------------------------


class DefinitionRef(ApiModel):
    """Which definition to run; the latest version when ``version`` is left out."""

    namespace: Namespace
    name: Name
    version: Version | None = None


class StartInstance(ApiModel):
    """Start an instance of a definition."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"definition": {"namespace": "examples", "name": "hello"}, "input": {"name": "Ada"}}]
        }
    )

    definition: DefinitionRef
    input: JSONValue = Field(default=None, description="The workflow input (any JSON; usually an object).")
    id: InstanceId | None = Field(
        default=None,
        description="A client-chosen instance id; starting again with the same id and request is idempotent.",
    )


class CancelInstance(ApiModel):
    """Why an instance is cancelled (optional)."""

    reason: Annotated[str, Field(max_length=1000)] | None = None


class InstanceDefinition(ApiModel):
    """The definition an instance runs."""

    namespace: str
    name: str
    version: str


class BookmarkOut(ApiModel):
    """What a suspended instance waits for."""

    id: str
    activity_id: str
    kind: BookmarkKind
    filter: dict[str, JSONValue] | None
    is_consumed: bool
    created_on: datetime | None

    @classmethod
    def from_record(cls, record: BookmarkRecord) -> BookmarkOut:
        """The API view of a bookmark record."""
        return cls(
            id=record.id,
            activity_id=record.activity_id,
            kind=record.kind,
            filter=record.filter,
            is_consumed=record.is_consumed,
            created_on=record.created_on,
        )


class InstanceSummary(ApiModel):
    """An instance as listed (without its bookmarks)."""

    id: str
    definition: InstanceDefinition
    status: InstanceStatus
    input: JSONValue = None
    output: JSONValue = None
    error: dict[str, JSONValue] | None = None
    current_activity_id: str | None = None
    parent_id: str | None = None
    created_on: datetime | None = None
    updated_on: datetime | None = None
    started_on: datetime | None = None
    completed_on: datetime | None = None

    @classmethod
    def fields_of(cls, record: InstanceRecord) -> dict[str, Any]:
        """The summary fields of an instance record, by field name."""
        return dict(
            id=record.id,
            definition=InstanceDefinition(
                namespace=record.namespace, name=record.name, version=record.version
            ),
            status=record.status,
            input=record.input,
            output=record.output,
            error=record.error,
            current_activity_id=record.current_activity_id,
            parent_id=record.parent_id,
            created_on=record.created_on,
            updated_on=record.updated_on,
            started_on=record.started_on,
            completed_on=record.completed_on,
        )

    @classmethod
    def from_record(cls, record: InstanceRecord) -> InstanceSummary:
        """The API view of an instance record in a listing."""
        return cls(**cls.fields_of(record))


class InstanceOut(InstanceSummary):
    """An instance with what it waits for."""

    bookmarks: list[BookmarkOut]

    @classmethod
    def build(cls, record: InstanceRecord, bookmarks: list[BookmarkRecord]) -> InstanceOut:
        """The API view of an instance and its bookmarks."""
        return cls(**cls.fields_of(record), bookmarks=[BookmarkOut.from_record(b) for b in bookmarks])


class InstanceList(ApiModel):
    """One page of instances, newest first; pass ``nextCursor`` back as ``cursor`` for the next."""

    items: list[InstanceSummary]
    next_cursor: str | None


class LogEntryOut(ApiModel):
    """One execution-log row."""

    seq: int | None
    reference: str = Field(
        description="The task reference (a JSON pointer into the document), `/` for the instance."
    )
    name: str | None
    type: str | None = Field(description="The task type (`set`, `call`, `listen`, ...).")
    event: LogEvent
    at: datetime
    detail: dict[str, JSONValue] | None

    @classmethod
    def from_record(cls, entry: LogEntry) -> LogEntryOut:
        """The API view of a log entry."""
        return cls(
            seq=entry.seq,
            reference=entry.reference,
            name=entry.name,
            type=entry.task_type,
            event=entry.event,
            at=entry.at,
            detail=entry.detail,
        )


class LogOut(ApiModel):
    """An instance's execution log, in order."""

    items: list[LogEntryOut]


# -- events -------------------------------------------------------------------------------------


class CloudEvent(BaseModel):
    """A CloudEvent 1.0 in the JSON format (structured mode); extension attributes allowed."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "specversion": "1.0",
                    "id": "evt-1",
                    "source": "/examples",
                    "type": "com.example.hello",
                    "data": {"name": "Ada"},
                }
            ]
        },
    )

    id: Annotated[str, Field(min_length=1, max_length=255)]
    source: Annotated[str, Field(min_length=1, max_length=255)]
    type: Annotated[str, Field(min_length=1, max_length=255)]
    specversion: Literal["1.0"]
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    time: str | None = None
    data: JSONValue = None
    data_base64: str | None = None


class PublishedEvent(ApiModel):
    """What one event of a request did."""

    id: str
    source: str
    matched: int = Field(description="How many waiting instances the event resumed.")
    duplicate: bool = Field(description="True when this event (source + id) had been received before.")


class PublishOut(ApiModel):
    """The outcome of ``POST /api/v1/events``."""

    accepted: int
    matched: int
    duplicates: int
    events: list[PublishedEvent] | None = Field(default=None, description="Per event; batch mode only.")


class EventOut(ApiModel):
    """A received event, kept for the retention period."""

    id: str
    source: str
    type: str
    received_on: datetime | None
    matched: int
    event: dict[str, JSONValue]

    @classmethod
    def from_record(cls, record: EventRecord) -> EventOut:
        """The API view of a kept event."""
        return cls(
            id=record.id,
            source=record.source,
            type=record.type,
            received_on=record.received_on,
            matched=record.matched,
            event=record.event,
        )


class EventList(ApiModel):
    """One page of kept events, newest first."""

    items: list[EventOut]
    next_cursor: str | None


# -- health -------------------------------------------------------------------------------------

HealthStatus = Literal["Healthy", "Degraded", "Unhealthy"]


class HealthEntry(ApiModel):
    """One component's health."""

    status: HealthStatus
    duration: str = Field(description="How long the check took, as `hh:mm:ss.fffffff`.")
    description: str | None = None


class HealthReport(ApiModel):
    """The health check answer (the operations guide's shape)."""

    status: HealthStatus
    total_duration: str
    entries: dict[str, HealthEntry]
