"""Collects what steps of one instance changed until the next checkpoint writes it.

Effects that the database carries (bookmarks, timers, child instances, outbox rows,
cancellations) are turned into rows here; effects performed by activities are not
this module's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowkeeper.engine import LogRecord
from flowkeeper.engine.effects import CancelWait, CreateBookmark, Effect, Emit, StartChild, StartTimer
from flowkeeper.records import (
    BookmarkKind,
    BookmarkRecord,
    BookmarkResume,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
    LogEvent,
    OutboxRecord,
    TimerRecord,
)

JSON = Any


@dataclass
class PendingChanges:
    """Rows waiting for the instance's next checkpoint."""

    instance_id: str
    log: list[LogEntry] = field(default_factory=list)
    bookmarks: dict[str, BookmarkRecord] = field(default_factory=dict)
    timers: list[TimerRecord] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    children: list[InstanceRecord] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    cancelled_bookmarks: list[str] = field(default_factory=list)
    cancelled_timers: list[str] = field(default_factory=list)
    resumes: list[BookmarkResume] = field(default_factory=list)
    emitted: list[Emit] = field(default_factory=list)

    def add_log(self, records: list[LogRecord]) -> None:
        for r in records:
            self.log.append(
                LogEntry(
                    self.instance_id, r.reference, r.name, r.task_type, LogEvent(r.event), r.at, r.detail
                )
            )

    def add_effect(self, effect: Effect, now: datetime) -> None:
        """Turn a persisted effect into rows (outside effects are ignored here)."""
        iid = self.instance_id
        if isinstance(effect, CreateBookmark):
            self.bookmarks[effect.id] = BookmarkRecord(
                effect.id,
                iid,
                effect.activity_id,
                BookmarkKind.EVENT,
                filter=effect.filter,
                event_type=effect.event_type,
                correlation_from=effect.correlation_from,
                correlation_value=effect.correlation_value,
            )
        elif isinstance(effect, StartTimer):
            self.bookmarks[effect.id] = BookmarkRecord(
                effect.id, iid, effect.activity_id, BookmarkKind.TIMER, filter={"purpose": effect.purpose}
            )
            self.timers.append(TimerRecord(effect.id, iid, effect.id, effect.activity_id, effect.due_at))
        elif isinstance(effect, StartChild):
            if effect.wait:
                self.bookmarks[effect.id] = BookmarkRecord(
                    effect.id, iid, effect.activity_id, BookmarkKind.CHILD, filter={"child": effect.child_id}
                )
            self.children.append(
                InstanceRecord(
                    id=effect.child_id,
                    namespace=effect.namespace,
                    name=effect.name,
                    version=effect.version or "",
                    status=InstanceStatus.PENDING,
                    input=effect.input,
                    parent_id=iid,
                    parent_bookmark_id=effect.id if effect.wait else None,
                )
            )
        elif isinstance(effect, Emit):
            self.emitted.append(effect)
            self.outbox.append(
                OutboxRecord(
                    str(effect.event["id"]), iid, effect.activity_id, effect.event, next_attempt_at=now
                )
            )
        elif isinstance(effect, CancelWait) and effect.kind in ("bookmark", "timer", "child"):
            if self.bookmarks.pop(effect.target, None) is None:
                self.cancelled_bookmarks.append(effect.target)
            if effect.kind == "timer":
                self.timers = [t for t in self.timers if t.id != effect.target]
                self.cancelled_timers.append(effect.target)

    @property
    def empty(self) -> bool:
        return not (
            self.log
            or self.bookmarks
            or self.timers
            or self.outbox
            or self.children
            or self.applied
            or self.cancelled_bookmarks
            or self.cancelled_timers
            or self.resumes
        )
