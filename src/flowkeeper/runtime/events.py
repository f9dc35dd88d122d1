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
    of every bookmark waiting for its type."""
    event_type = str(event.get("type", ""))
    pairs: list[tuple[str, str]] = []
    for spec in await engine.store.correlation_specs(event_type):
        value = event_correlation(spec, event)
        if value is not None:
            pairs.append((spec, value))
    return await engine.store.find_event_bookmarks(event_type, pairs)


async def publish(engine: Engine, event: dict[str, JSON]) -> PublishResult:
    """Keep an incoming event and resume every bookmark it matches, exactly once."""
    check_event(event)
    key = event_key(event)
    # Keeping the event and looking up its bookmarks are independent: overlap them.
    stored, found = await asyncio.gather(
        engine.store.record_event(
            EventRecord(key=key, id=event["id"], source=event["source"], type=event["type"], event=event)
        ),
        candidates(engine, event),
    )
    if stored is None:
        return PublishResult(key, 0, duplicate=True)
    resumed: list[str] = []
    for bookmark in matching(found, event):
        if await engine.store.deliver_event(bookmark.id, key, event):
            resumed.append(bookmark.instance_id)
    if resumed:
        engine.poke(resumed)  # runs of these instances going on here pick the event up
        for instance_id in resumed:
            engine.run_soon(instance_id)
    return PublishResult(key, len(resumed), duplicate=False)


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
