"""Record builders for the store tests (the ``make`` fixture)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowkeeper.records import (
    BookmarkKind,
    BookmarkRecord,
    Checkpoint,
    DefinitionRecord,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
    LogEvent,
    OutboxRecord,
    TimerRecord,
)
from flowkeeper.store import Store

OWNER = "worker-1"
LEASE = timedelta(minutes=5)


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4()}"


class Make:
    """Builds valid records with sensible defaults; keyword arguments override fields."""

    owner = OWNER
    lease = LEASE

    def definition(self, version: str = "1.0.0", **kw: Any) -> DefinitionRecord:
        fields: dict[str, Any] = {
            "namespace": "tests",
            "name": "greet",
            "version": version,
            "document": {"document": {"dsl": "1.0.0", "version": version}, "do": []},
            "source": f"version: {version}",
            "content_hash": f"hash-{version}",
        }
        return DefinitionRecord(**(fields | kw))

    def instance(self, **kw: Any) -> InstanceRecord:
        fields: dict[str, Any] = {
            "id": new_id("i-"),
            "namespace": "tests",
            "name": "greet",
            "version": "1.0.0",
            "status": InstanceStatus.PENDING,
            "input": {"name": "world"},
        }
        return InstanceRecord(**(fields | kw))

    async def claimed(self, store: Store, **kw: Any) -> InstanceRecord:
        """A new instance created already claimed by ``OWNER``."""
        expires = await store.now() + LEASE
        fields: dict[str, Any] = {
            "status": InstanceStatus.RUNNING,
            "lease_owner": OWNER,
            "lease_expires_at": expires,
        }
        return await store.create_instance(self.instance(**(fields | kw)))

    def checkpoint(self, instance: InstanceRecord, **kw: Any) -> Checkpoint:
        """The next checkpoint of ``instance`` as its current lease holder would write it."""
        assert instance.lease_owner is not None
        fields: dict[str, Any] = {
            "instance_id": instance.id,
            "expected_row_version": instance.row_version,
            "fencing_token": instance.fencing_token,
            "lease_owner": instance.lease_owner,
            "status": InstanceStatus.RUNNING,
            "state": {"frames": [], "data": {}},
        }
        return Checkpoint(**(fields | kw))

    def log(
        self, instance_id: str, *references: str, event: LogEvent = LogEvent.COMPLETED
    ) -> tuple[LogEntry, ...]:
        at = datetime.now(UTC)
        return tuple(
            LogEntry(
                instance_id=instance_id,
                reference=ref,
                name=ref.rsplit("/", 1)[-1],
                task_type="set",
                event=event,
                at=at,
                detail={"ref": ref},
            )
            for ref in references
        )

    def bookmark(self, instance_id: str, **kw: Any) -> BookmarkRecord:
        fields: dict[str, Any] = {
            "id": new_id("b-"),
            "instance_id": instance_id,
            "activity_id": "/do/0/wait",
            "kind": BookmarkKind.EVENT,
            "filter": {"with": {"type": "com.example.ping"}},
            "event_type": "com.example.ping",
        }
        return BookmarkRecord(**(fields | kw))

    def timer(self, bookmark: BookmarkRecord, due_at: datetime, **kw: Any) -> TimerRecord:
        fields: dict[str, Any] = {
            "id": new_id("t-"),
            "instance_id": bookmark.instance_id,
            "bookmark_id": bookmark.id,
            "activity_id": bookmark.activity_id,
            "due_at": due_at,
        }
        return TimerRecord(**(fields | kw))

    def outbox(self, instance_id: str | None, **kw: Any) -> OutboxRecord:
        fields: dict[str, Any] = {
            "id": new_id("o-"),
            "instance_id": instance_id,
            "activity_id": "/do/1/emit",
            "event": {"specversion": "1.0", "type": "com.example.done", "source": "tests", "id": new_id()},
        }
        return OutboxRecord(**(fields | kw))

    async def waiting_on_timer(
        self, store: Store, due_at: datetime
    ) -> tuple[InstanceRecord, BookmarkRecord, TimerRecord]:
        """An instance suspended (lease released) on a timer due at ``due_at``."""
        instance = await self.claimed(store)
        bookmark = self.bookmark(instance.id, kind=BookmarkKind.TIMER, event_type=None, filter=None)
        timer = self.timer(bookmark, due_at)
        await store.checkpoint(
            self.checkpoint(
                instance,
                status=InstanceStatus.SUSPENDED,
                new_bookmarks=(bookmark,),
                new_timers=(timer,),
                release_lease=True,
            )
        )
        return instance, bookmark, timer

    async def suspended_on(
        self, store: Store, bookmark_kind: BookmarkKind = BookmarkKind.EVENT, **kw: Any
    ) -> tuple[InstanceRecord, BookmarkRecord]:
        """An instance suspended (lease released) on one new bookmark."""
        instance = await self.claimed(store)
        bookmark = self.bookmark(instance.id, kind=bookmark_kind, **kw)
        suspended = await store.checkpoint(
            self.checkpoint(
                instance,
                status=InstanceStatus.SUSPENDED,
                new_bookmarks=(bookmark,),
                release_lease=True,
            )
        )
        assert suspended.status is InstanceStatus.SUSPENDED
        return suspended, bookmark


@pytest.fixture
def make() -> Make:
    """Record builders."""
    return Make()
