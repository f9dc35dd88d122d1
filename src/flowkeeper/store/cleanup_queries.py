"""Retention: deleting finished instances, old execution-log rows and delivered outbox rows.

Each method is one autocommitted ``DELETE … WHERE key IN (SELECT … LIMIT n)``: a
bounded batch in a short transaction, oldest first, so the cleanup service can run
beside the engine without holding locks on a large part of a table. On PostgreSQL the
inner ``SELECT`` takes ``FOR UPDATE SKIP LOCKED``: rows a worker is writing right now
(and rows another replica's cleanup is deleting) are passed over until the next batch.

What goes with a finished instance: its bookmarks, timers, execution log and event
deliveries, through the ``ON DELETE CASCADE`` foreign keys of those tables (SQLite
enforces them too: ``PRAGMA foreign_keys = ON``). Its outbox rows stay: they have no
foreign key and their own retention (``delete_delivered_outbox``).

Parents and children (``parent_id``, which has no foreign key): each instance is
judged on its own (terminal and completed before the cutoff), with one exception: an
instance is kept while any of its children is not terminal, because that child will
resume the parent's bookmark when it finishes and its API view names the parent. A
terminal child of a deleted parent is deleted when its own time comes; until then its
``parent_id`` names an instance that is gone (which nothing depends on).
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Delete, and_, bindparam, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from flowkeeper.records import InstanceStatus, OutboxStatus
from flowkeeper.store.connector import Connector
from flowkeeper.store.tables import (
    UTCDateTime,
    workflow_execution_log,
    workflow_instance,
    workflow_outbox,
)

_i, _l, _o = workflow_instance.c, workflow_execution_log.c, workflow_outbox.c

_TERMINAL = [s.value for s in InstanceStatus if s.is_terminal]


def _before() -> Any:
    return bindparam("p_before", type_=UTCDateTime())


class CleanupQueries(Connector):
    """Bounded retention deletes (see the module docstring for what goes with what)."""

    # -- statements ----------------------------------------------------------------------------

    @cached_property
    def _delete_finished_instances_sql(self) -> Delete:
        child = workflow_instance.alias("child")
        live_child = exists().where(child.c.parent_id == _i.id, child.c.status.not_in(_TERMINAL))
        doomed = (
            select(_i.id)
            .where(_i.status.in_(_TERMINAL), _i.completed_on < _before(), ~live_child)
            .order_by(_i.completed_on)
            .limit(bindparam("p_limit"))
            .with_for_update(skip_locked=True, of=workflow_instance)
        )
        return delete(workflow_instance).where(_i.id.in_(doomed))

    @cached_property
    def _delete_log_entries_sql(self) -> Delete:
        # Ordered by the surrogate key, which grows with time: the primary-key index
        # finds the oldest rows first without an index on ``at`` (which every log
        # insert, the hottest write there is, would have to maintain).
        doomed = (
            select(_l.id)
            .join(workflow_instance, _i.id == _l.instance_id)
            .where(_l.at < _before(), _i.status.in_(_TERMINAL))
            .order_by(_l.id)
            .limit(bindparam("p_limit"))
            .with_for_update(skip_locked=True, of=workflow_execution_log)
        )
        return delete(workflow_execution_log).where(_l.id.in_(doomed))

    @cached_property
    def _delete_delivered_outbox_sql(self) -> Delete:
        # Retention counts from delivery (a row retried for days is kept as long after
        # its delivery as any other); ``created_on`` is never later, so the index on it
        # narrows the search first.
        doomed = (
            select(_o.id)
            .where(
                and_(
                    _o.status == OutboxStatus.DELIVERED.value,
                    _o.created_on < _before(),
                    func.coalesce(_o.delivered_on, _o.created_on) < _before(),
                )
            )
            .order_by(_o.created_on)
            .limit(bindparam("p_limit"))
            .with_for_update(skip_locked=True)
        )
        return delete(workflow_outbox).where(_o.id.in_(doomed))

    async def _delete_batch(self, operation: str, stmt: Delete, before: datetime, limit: int) -> int:
        if limit < 1:
            return 0
        params = {"p_before": before, "p_limit": limit}

        async def run(conn: AsyncConnection) -> int:
            return int((await conn.execute(stmt, params)).rowcount)

        return await self._write(operation, run, autocommit=True)

    # -- retention -----------------------------------------------------------------------------

    async def delete_finished_instances(self, completed_before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` terminal instances completed before a time, oldest first,
        with their bookmarks, timers, execution log and event deliveries; how many instances.

        An instance with a child that is not terminal is kept."""
        return await self._delete_batch(
            "delete_finished_instances", self._delete_finished_instances_sql, completed_before, limit
        )

    async def delete_log_entries(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` execution-log rows written before a time, of terminal
        instances only; how many."""
        return await self._delete_batch("delete_log_entries", self._delete_log_entries_sql, before, limit)

    async def delete_delivered_outbox(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` ``delivered`` outbox rows delivered before a time (never
        pending, processing or dead ones); how many."""
        return await self._delete_batch(
            "delete_delivered_outbox", self._delete_delivered_outbox_sql, before, limit
        )
