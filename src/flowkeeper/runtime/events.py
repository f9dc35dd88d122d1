"""Incoming and emitted CloudEvents meet the bookmarks that wait for them.

An event resumes at most one bookmark per instance (the oldest that matches) and every
matching instance (a broadcast). Received events are kept for ``events.retention``:
a ``listen`` that starts waiting just after its event arrived (the race between
"start" and "callback") is served from them when its bookmark is created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowkeeper.engine.events import event_correlation, match
from flowkeeper.errors import InvalidEvent
from flowkeeper.records import BookmarkKind, BookmarkRecord, EventRecord
from flowkeeper.runtime.scheduled_starts import start_for_event
from flowkeeper.schedule_records import ScheduleKind

if TYPE_CHECKING:
    from flowkeeper.runtime.engine import Engine

JSON = Any


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What publishing one event did."""

    key: str
    matched: int
    duplicate: bool


def event_key(event: dict[str, JSON]) -> str:
    """CloudEvents: ``source`` + ``id`` identify an event."""
    return f"{event['source']}#{event['id']}"


def check_event(event: JSON) -> dict[str, JSON]:
    """The required CloudEvents attributes are present and well-formed."""
    if not isinstance(event, dict):
        raise InvalidEvent("a CloudEvent must be a JSON object")
    for attribute in ("id", "source", "type", "specversion"):
        value = event.get(attribute)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"the CloudEvent attribute {attribute!r} is required (a non-empty string)")
    if event["specversion"] != "1.0":
        raise InvalidEvent(f"unsupported CloudEvents specversion {event['specversion']!r}; expected '1.0'")
    return event


def matching(candidates: Iterable[BookmarkRecord], event: dict[str, JSON]) -> list[BookmarkRecord]:
    """The bookmarks an event resumes: the first matching one of each instance."""
    chosen: list[BookmarkRecord] = []
    served: set[str] = set()
    for bookmark in candidates:
        if bookmark.instance_id in served or bookmark.is_consumed or bookmark.kind != BookmarkKind.EVENT:
            continue
        if bookmark.filter is not None and match(bookmark.filter, event) is not None:
            chosen.append(bookmark)
            served.add(bookmark.instance_id)
    return chosen


async def candidates(engine: Engine, event: dict[str, JSON]) -> list[BookmarkRecord]:
    """The bookmarks that may match an event: found by correlation index, not by a scan
    of every bookmark waiting for its type.

    The correlation specs of a type seen so far are remembered (``engine.correlation_specs``):
    the event's values for them go with the query, which also reports specs not seen yet
    (then this asks again with those evaluated too), so one round trip is the rule.
    """
    event_type = str(event.get("type", ""))
    # Only types with waiting correlated bookmarks get an entry: posting events of
    # made-up types must not grow this.
    known = engine.correlation_specs.get(event_type, frozenset())
    while True:
        pairs: list[tuple[str, str]] = []
        for spec in known:
            value = event_correlation(spec, event)
            if value is not None:
                pairs.append((spec, value))
        found, unknown = await engine.store.event_candidates(event_type, pairs, known)
        if not unknown:
            return found
        known = engine.correlation_specs[event_type] = frozenset(known | unknown)


async def publish(engine: Engine, event: dict[str, JSON]) -> PublishResult:
    """Keep an incoming event and resume every bookmark it matches, exactly once."""
    check_event(event)
    key = event_key(event)
    # Keeping the event, looking up its bookmarks and the schedules it may start are
    # independent: overlap them.
    stored, found, schedules = await asyncio.gather(
        engine.store.record_event(
            EventRecord(key=key, id=event["id"], source=event["source"], type=event["type"], event=event)
        ),
        candidates(engine, event),
        engine.store.list_schedules(ScheduleKind.ON),
    )
    # A duplicate is delivered too: the first publish may have kept the event and then
    # failed before delivering it (a lost connection answered 503, a crash), and its
    # retry must repair that. The store delivers an event to an instance at most once,
    # so a true duplicate resumes nothing.
    chosen = matching(found, event)
    resumed = await asyncio.gather(*(_deliver(engine, bookmark, key, event) for bookmark in chosen))
    # schedule.on: the runs this event starts (a retry repairs a start that failed).
    await start_for_event(engine, event, key, duplicate=stored is None, schedules=schedules)
    return PublishResult(key, sum(resumed), duplicate=stored is None)


async def _deliver(engine: Engine, bookmark: BookmarkRecord, key: str, event: dict[str, JSON]) -> bool:
    """Deliver to one bookmark; wake the instance's run here, or claim and start one."""
    instance_id = bookmark.instance_id
    if instance_id in engine.runs:
        # A run of it is going on here: it picks the event up when poked.
        if not await engine.store.deliver_event(bookmark.id, key, event):
            return False
        engine.poke([instance_id])
        engine.run_soon(instance_id)  # in case that run parked meanwhile
        return True
    delivery = await engine.store.deliver_and_claim(bookmark.id, key, event, engine.owner, engine.lease)
    if not delivery.delivered:
        return False
    if delivery.claimed is not None:
        engine.run_delivered(delivery)
    else:  # runnable, but another worker holds it (it re-reads its bookmarks), or held
        engine.notify_work()
    return True


async def deliver_retained(
    engine: Engine, created_on: datetime | None, bookmarks: list[BookmarkRecord]
) -> list[str]:
    """Serve newly created event bookmarks from events kept since their instance started.

    Runs after the bookmarks are committed: an event published concurrently either
    sees them, or is committed before this look (so this look sees it). Returns the
    ids of the bookmarks consumed.
    """
    waiting = [b for b in bookmarks if b.kind == BookmarkKind.EVENT and not b.is_consumed]
    if not waiting:
        return []
    now = await engine.store.now()
    since = now - engine.event_retention
    if created_on is not None and created_on > since:
        since = created_on
    types = {b.event_type for b in waiting}
    kept: list[EventRecord] = []
    for event_type in types:
        kept += await engine.store.recent_events(since - timedelta(seconds=1), event_type)
    consumed: list[str] = []
    for record in sorted(kept, key=lambda r: r.received_on or now):
        for bookmark in matching([b for b in waiting if b.id not in consumed], record.event):
            if await engine.store.deliver_event(bookmark.id, record.key, record.event):
                consumed.append(bookmark.id)
    return consumed
