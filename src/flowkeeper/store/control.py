"""Instance control: cancel (with children), manual suspend/resume, retry, status counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from flowkeeper.errors import (
    InstanceNotFound,
    InvalidTransition,
    standard_error,
)
from flowkeeper.records import (
    JSON,
    RUNNABLE_STATUSES,
    BookmarkKind,
    BookmarkRecord,
    InstanceRecord,
    InstanceStatus,
    LogEvent,
)
from flowkeeper.store import rows, writes
from flowkeeper.store.connector import Connector
from flowkeeper.store.statements import Statements
from flowkeeper.store.tables import (
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


class InstanceControl(Connector):
    """Instance control: cancel (with children), manual suspend/resume, retry, status counts."""

    _sql: Statements

    # -- instance control ----------------------------------------------------------------------

    async def cancel_instance(self, instance_id: str, *, reason: str | None = None) -> InstanceRecord:
        """Cancel an instance and its unfinished descendants in one transaction."""
        clock = self._clock()

        async def cancel(conn: AsyncConnection) -> InstanceRecord:
            tree = await self._lock_tree(conn, instance_id)
            root = tree.get(instance_id)
            if root is None:
                raise InstanceNotFound(f"instance {instance_id} not found")
            if root.status.is_terminal:
                raise InvalidTransition(f"instance {instance_id} is already {root.status.value}")
            doomed = {"p_ids": sorted(i.id for i in tree.values() if not i.status.is_terminal)}
            updated = await conn.execute(self._sql.cancel_instances, doomed | clock)
            cancelled = {
                r.id: r
                for r in await self._log_control(conn, updated, LogEvent.CANCELLED, {"reason": reason}, clock)
            }
            # A parent waiting for a cancelled child (and not cancelled with it) gets
            # the child's end as an error it can catch. Its row is locked after the
            # children's and before any bookmark row, as everywhere.
            ends = [
                (child.parent_bookmark_id, {"error": _cancelled_error(child.id, reason)})
                for child in cancelled.values()
                if child.parent_bookmark_id and child.parent_id not in cancelled
            ]
            if ends:
                await writes.consume(conn, self._sql, ends, clock, locks_rows=self.locks_rows)
            await conn.execute(self._sql.delete_instances_timers, doomed)
            await conn.execute(self._sql.delete_instances_bookmarks, doomed)
            return cancelled[instance_id]

        return await self._write("cancel_instance", cancel)

    async def suspend_instance(self, instance_id: str) -> InstanceRecord:
        """Hold an instance with a ``manual`` bookmark, fencing off whoever runs it."""
        clock = self._clock()
        manual_id = _manual_bookmark_id(instance_id)

        async def suspend(conn: AsyncConnection) -> InstanceRecord:
            current = await self._lock_instance(conn, instance_id)
            if current.status.is_terminal:
                raise InvalidTransition(f"instance {instance_id} is already {current.status.value}")
            held = (await conn.execute(self._sql.manual_bookmark, {"p_id": manual_id})).first()
            if held is not None:
                if not held.is_consumed:
                    raise InvalidTransition(f"instance {instance_id} is already suspended manually")
                # Resumed through its bookmark but not applied yet: the new hold replaces it.
                await conn.execute(self._sql.delete_bookmark, {"p_id": manual_id})
            updated = await conn.execute(self._sql.suspend_instance, {"p_ids": [instance_id]} | clock)
            [suspended] = await self._log_control(conn, updated, LogEvent.SUSPENDED, None, clock)
            hold = BookmarkRecord(
                id=manual_id,
                instance_id=instance_id,
                activity_id="/",
                kind=BookmarkKind.MANUAL,
                # What resume_instance goes back to.
                filter={"previousStatus": current.status.value},
            )
            await conn.execute(self._sql.insert_bookmark, rows.bookmark_params(hold) | clock)
            return suspended

        return await self._write("suspend_instance", suspend)

    async def resume_instance(self, instance_id: str) -> InstanceRecord:
        """Release a manual suspension: running if there is work, else waiting as before."""
        clock = self._clock()
        release = {"p_id": _manual_bookmark_id(instance_id), "p_instance_id": instance_id}

        async def resume(conn: AsyncConnection) -> InstanceRecord:
            await self._lock_instance(conn, instance_id)
            released = (await conn.execute(self._sql.release_manual, release)).first()
            if released is None:
                raise InvalidTransition(f"instance {instance_id} is not suspended manually")
            previous = (released.filter or {}).get("previousStatus")
            params = {"p_ids": [instance_id], "p_was_runnable": previous in _RUNNABLE}
            updated = await conn.execute(self._sql.resume_instance, params | clock)
            [resumed] = await self._log_control(conn, updated, LogEvent.RESUMED, None, clock)
            return resumed

        return await self._write("resume_instance", resume)

    async def retry_instance(self, instance_id: str, state: dict[str, JSON] | None) -> InstanceRecord:
        """Make a failed instance runnable again from ``state``."""
        clock = self._clock()

        async def retry(conn: AsyncConnection) -> InstanceRecord:
            current = await self._lock_instance(conn, instance_id)
            if current.status is not InstanceStatus.FAILED:
                raise InvalidTransition(
                    f"instance {instance_id} is {current.status.value}; only a failed instance can be retried"
                )
            params = {"p_ids": [instance_id], "p_state": state}
            updated = await conn.execute(self._sql.retry_instance, params | clock)
            [retried] = await self._log_control(conn, updated, LogEvent.RETRIED, None, clock)
            return retried

        return await self._write("retry_instance", retry)

    async def count_instances(self) -> dict[InstanceStatus, int]:
        """Instances per status (every status present, zero included)."""
        counts = dict.fromkeys(InstanceStatus, 0)
        query = select(_i.status, func.count()).group_by(_i.status)
        async with self._reading("count_instances") as conn:
            for status, count in await conn.execute(query):
                counts[InstanceStatus(status)] = count
        return counts

    async def _lock_instance(self, conn: AsyncConnection, instance_id: str) -> InstanceRecord:
        row = (await conn.execute(self._sql.lock_instance, {"p_id": instance_id})).first()
        if row is None:
            raise InstanceNotFound(f"instance {instance_id} not found")
        return rows.instance(row)

    async def _lock_tree(self, conn: AsyncConnection, instance_id: str) -> dict[str, InstanceRecord]:
        """Lock an instance and its descendants; their current rows by id (empty: not found)."""
        locked: dict[str, InstanceRecord] = {}
        while True:
            result = await conn.execute(self._sql.lock_tree, {"p_id": instance_id})
            found = {r.id: r for r in map(rows.instance, result)}
            new = found.keys() - locked.keys()
            locked.update(found)
            # On PostgreSQL, a child inserted by a checkpoint that committed while we
            # waited for its parent's lock is not in that statement's snapshot: look
            # again until nothing new appears (no child appears under a locked parent).
            # SQLite's single writer sees everything the first time.
            if not new or not self.locks_rows:
                return locked

    async def _log_control(
        self,
        conn: AsyncConnection,
        updated: Iterable[Row[Any]],
        event: LogEvent,
        detail: dict[str, JSON] | None,
        clock: dict[str, Any],
    ) -> list[InstanceRecord]:
        """An instance-level log row for each updated instance row (numbered by its
        ``log_seq``); the rows as records."""
        written = list(updated)
        entries = [
            {
                "p_instance_id": row.id,
                "p_seq": row.log_seq,
                "p_name": row.name,
                "p_event": event.value,
                "p_detail": detail,
            }
            for row in written
        ]
        if entries:
            await writes.insert_many(conn, self._sql.insert_control_log, entries, clock)
        return [rows.instance(r) for r in written]


_RUNNABLE = frozenset(status.value for status in RUNNABLE_STATUSES)


def _manual_bookmark_id(instance_id: str) -> str:
    return f"{instance_id}.manual"


def _cancelled_error(instance_id: str, reason: str | None) -> dict[str, JSON]:
    """What a waiting parent receives when its child is cancelled (a DSL runtime error)."""
    detail = f"child instance {instance_id} was cancelled" + (f": {reason}" if reason else "")
    return standard_error("runtime", detail, title="Cancelled").to_dict()
