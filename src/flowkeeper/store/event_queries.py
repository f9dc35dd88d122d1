"""Received events: kept for the retention window, delivered to bookmarks exactly once per instance."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert

from flowkeeper.records import (
    JSON,
    BookmarkKind,
    BookmarkRecord,
    EventRecord,
)
from flowkeeper.store import rows
from flowkeeper.store.connector import Connector
from flowkeeper.store.statements import Statements, param
from flowkeeper.store.tables import (
    UTCDateTime,
    workflow_bookmark,
    workflow_definition,
    workflow_event,
    workflow_execution_log,
    workflow_instance,
    workflow_outbox,
    workflow_timer,
)

_d, _i, _b, _t, _l, _o, _e = (
    workflow_definition.c,
    workflow_instance.c,
    workflow_bookmark.c,
    workflow_timer.c,
    workflow_execution_log.c,
    workflow_outbox.c,
    workflow_event.c,
)


class EventQueries(Connector):
    """Received events: kept for the retention window, delivered to bookmarks exactly once per instance."""

    _sql: Statements

    def _fused_delivery_sql(self) -> Executable | None:
        """One statement doing all of ``deliver_event`` once the instance row is locked
        (``Statements.insert_delivery``'s checks, consuming the bookmark, counting the
        delivery, waking the instance), binding ``p_bookmark_id``, ``p_event_key`` and
        ``p_payload`` and returning a row when it delivered; None when the dialect
        cannot (four statements do it then)."""
        return None

    # -- finding the bookmarks an event resumes -------------------------------------------------

    async def event_candidates(
        self, event_type: str, correlations: Sequence[tuple[str, str]], known_specs: Collection[str]
    ) -> tuple[list[BookmarkRecord], set[str]]:
        """Bookmarks an event may resume (by index) and the correlation specs not yet known."""
        query = _candidates_sql(len(correlations), bool(known_specs))
        params: dict[str, Any] = {"p_type": event_type, "p_known": list(known_specs)}
        for n, (spec, value) in enumerate(correlations):
            params[f"p_from_{n}"], params[f"p_value_{n}"] = spec, value
        async with self._reading("event_candidates") as conn:
            found = [rows.bookmark(r) for r in await conn.execute(query, params)]
        known = set(known_specs)
        unknown = {b.correlation_from for b in found if b.correlation_from is not None} - known
        if unknown:  # the probe's rows stand for their specs only
            found = [b for b in found if b.correlation_from is None or b.correlation_from in known]
        found.sort(key=lambda b: (b.created_on or _EPOCH, b.id))
        return found, unknown

    # -- events --------------------------------------------------------------------------------

    @cached_property
    def _record_event_sql(self) -> ReturningInsert[Any]:
        return (
            self._insert_or_ignore(workflow_event)
            .values(
                key=param(_e.key),
                id=param(_e.id),
                source=param(_e.source),
                type=param(_e.type),
                event=param(_e.event),
                received_on=self._sql.now,
                matched=param(_e.matched),
            )
            .returning(*workflow_event.c)
        )

    async def record_event(self, event: EventRecord) -> EventRecord | None:
        """Keep an event; None when its key is kept already (a duplicate)."""
        params = rows.event_params(event) | self._clock()

        async def record(conn: AsyncConnection) -> EventRecord | None:
            row = (await conn.execute(self._record_event_sql, params)).first()
            return None if row is None else rows.event(row)

        return await self._write("record_event", record, autocommit=True)

    async def recent_events(self, since: datetime, event_type: str | None = None) -> list[EventRecord]:
        """Kept events received at or after ``since``, oldest first."""
        query = select(workflow_event).where(_e.received_on >= since)
        if event_type is not None:
            query = query.where(_e.type == event_type)
        async with self._reading("recent_events") as conn:
            return [rows.event(r) for r in await conn.execute(query.order_by(_e.received_on, _e.key))]

    async def list_events(
        self, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[EventRecord], str | None]:
        """Kept events newest first; the cursor is the last row's (received_on, key)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(workflow_event)
        if cursor is not None:
            last_received, last_key = rows.decode_cursor(cursor)
            query = query.where(
                tuple_(_e.received_on, _e.key) < tuple_(literal(last_received, UTCDateTime()), last_key)
            )
        query = query.order_by(_e.received_on.desc(), _e.key.desc()).limit(limit + 1)
        async with self._reading("list_events") as conn:
            items = [rows.event(r) for r in await conn.execute(query)]
        if len(items) <= limit:
            return items, None
        items = items[:limit]
        last = items[-1]
        assert last.received_on is not None
        return items, rows.encode_cursor(last.received_on, last.key)

    async def deliver_event(self, bookmark_id: str, event_key: str, payload: JSON) -> bool:
        """Consume a bookmark for a kept event: once per bookmark, once per instance and event."""
        clock = self._clock()
        keys = {"p_bookmark_id": bookmark_id, "p_event_key": event_key}
        fused = self._fused_delivery_sql()

        async def deliver(conn: AsyncConnection) -> bool:
            if self.locks_rows:
                # The bookmark's instance row first (the order every writer locks in):
                # whoever else consumes this instance's bookmarks, delivers to it,
                # suspends or cancels it waits here, so what follows decides alone.
                locked = await conn.execute(self._sql.lock_bookmark_instances, {"p_ids": [bookmark_id]})
                if locked.first() is None:
                    return False  # consumed or gone
            if fused is not None:
                return (await conn.execute(fused, keys | {"p_payload": payload} | clock)).first() is not None
            delivered = (await conn.execute(self._sql.insert_delivery, keys | clock)).first()
            if delivered is None:
                return False
            consume = {"p_id": bookmark_id, "p_payload": payload}
            await conn.execute(self._sql.consume_bookmark, consume | clock)
            await conn.execute(self._sql.count_delivery, {"p_event_key": event_key})
            await conn.execute(self._sql.make_runnable, {"p_ids": [delivered.instance_id]} | clock)
            return True

        return await self._write("deliver_event", deliver)

    async def delete_events(self, received_before: datetime, limit: int = 1000) -> int:
        """Drop the oldest kept events received before a time (their deliveries go with them)."""
        if limit < 1:
            return 0
        params = {"p_before": received_before, "p_limit": limit}

        async def delete(conn: AsyncConnection) -> int:
            return int((await conn.execute(self._sql.delete_events, params)).rowcount)

        return await self._write("delete_events", delete, autocommit=True)


_EPOCH = datetime.min.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=64)
def _candidates_sql(correlation_count: int, any_known: bool) -> Select[Any]:
    """The bookmarks matching by type and correlation, UNION ALL one bookmark of each
    correlation spec of the type outside ``p_known``.

    The specs are listed by a loose index scan (a recursive CTE hopping from one distinct
    ``correlation_from`` to the next in ``ix_workflow_bookmark_correlation``): as many
    index probes as there are specs, however many bookmarks wait. Built once per shape
    (number of correlation pairs, whether any spec is known).
    """
    event_type = bindparam("p_type", type_=_b.event_type.type)
    waiting = and_(_b.kind == BookmarkKind.EVENT.value, _b.is_consumed == false())
    uncorrelated = _b.correlation_from.is_(None)
    pairs = [
        and_(
            _b.correlation_from == bindparam(f"p_from_{n}"),
            _b.correlation_value == bindparam(f"p_value_{n}"),
        )
        for n in range(correlation_count)
    ]
    matches = select(workflow_bookmark).where(
        waiting,
        or_(_b.event_type == event_type, _b.event_type.is_(None)),
        or_(uncorrelated, *pairs),
    )
    inner = workflow_bookmark.alias("spec_hop")
    of_type = and_(inner.c.is_consumed == false(), inner.c.event_type == event_type)
    specs = (
        select(func.min(inner.c.correlation_from).label("spec"))
        .where(of_type, inner.c.correlation_from.is_not(None))
        .cte("specs", recursive=True)
    )
    hop = select(func.min(inner.c.correlation_from)).where(of_type, inner.c.correlation_from > specs.c.spec)
    specs = specs.union_all(select(hop.scalar_subquery()).where(specs.c.spec.is_not(None)))
    sample = workflow_bookmark.alias("sample")
    one_of_spec = (
        select(sample.c.id)
        .where(sample.c.is_consumed == false(), sample.c.event_type == event_type)
        .where(sample.c.correlation_from == specs.c.spec)
        .limit(1)
        .scalar_subquery()
    )
    unknown: ColumnElement[bool] = specs.c.spec.is_not(None)
    if any_known:
        unknown = and_(unknown, specs.c.spec.not_in(bindparam("p_known", expanding=True)))
    probe = select(workflow_bookmark).where(_b.id.in_(select(one_of_spec).where(unknown)))
    return union_all(matches, probe)  # type: ignore[return-value]
