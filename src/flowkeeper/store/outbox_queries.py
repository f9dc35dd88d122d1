"""The outbox processor's queries: claim due rows, settle them, list and re-queue them.

A row's life: ``pending`` (due at ``next_attempt_at``) -> claimed, ``processing``
(``claimed_by`` = the processor, ``next_attempt_at`` = when the claim runs out) ->
``delivered``, back to ``pending`` for a retry, or ``dead`` after the last attempt; an
operator may re-queue a dead row. A ``processing`` row whose claim ran out is due again:
that is how the rows of a processor that crashed are picked up by another. Every
settling write is guarded by the claim (``claimed_by`` and ``processing``), so a
processor whose claim was taken over cannot overwrite the new owner's outcome.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, literal, select, tuple_, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningUpdate

from flowkeeper.errors import InvalidTransition, OutboxEventNotFound
from flowkeeper.records import OutboxRecord, OutboxStatus
from flowkeeper.store import rows
from flowkeeper.store.connector import Connector
from flowkeeper.store.statements import Statements, ids_param, param
from flowkeeper.store.tables import UTCDateTime, workflow_outbox

_o = workflow_outbox.c
_PENDING = OutboxStatus.PENDING.value
_PROCESSING = OutboxStatus.PROCESSING.value
_DELIVERED = OutboxStatus.DELIVERED.value
_DEAD = OutboxStatus.DEAD.value


class OutboxQueries(Connector):
    """The outbox processor's queries: claim due rows, settle them, list and re-queue them."""

    _sql: Statements

    # -- statements ----------------------------------------------------------------------------

    def _due(self, status: str) -> Any:
        # One CTE per status, each an ordered range scan of ix_workflow_outbox_processing
        # (status, next_attempt_at); a single "status IN (...)" would sort every due row.
        # SKIP LOCKED: concurrent processors pass over each other's rows.
        return (
            select(_o.id, _o.next_attempt_at)
            .where(_o.status == status, _o.next_attempt_at <= self._sql.now)
            .order_by(_o.next_attempt_at)
            .limit(bindparam("p_limit"))
            .with_for_update(key_share=True, skip_locked=True)
            .cte(f"due_{status}")
        )

    @cached_property
    def _claim_outbox_sql(self) -> ReturningUpdate[Any]:
        pending, expired = self._due(_PENDING), self._due(_PROCESSING)
        due = union_all(
            select(pending.c.id, pending.c.next_attempt_at), select(expired.c.id, expired.c.next_attempt_at)
        ).subquery("due")
        picked = select(due.c.id).order_by(due.c.next_attempt_at).limit(bindparam("p_limit"))
        return (
            update(workflow_outbox)
            .where(_o.id.in_(picked))
            .values(
                status=_PROCESSING, claimed_by=param(_o.claimed_by), next_attempt_at=self._sql.lease_until
            )
            .returning(*workflow_outbox.c)
        )

    @staticmethod
    def _claimed(*, many: bool = False) -> ColumnElement[bool]:
        held = (_o.status == _PROCESSING) & (_o.claimed_by == param(_o.claimed_by))
        return held & (_o.id.in_(ids_param()) if many else _o.id == param(_o.id))

    @cached_property
    def _complete_outbox_sql(self) -> ReturningUpdate[Any]:
        return (
            update(workflow_outbox)
            .where(self._claimed(many=True))
            .values(
                status=_DELIVERED,
                attempts=_o.attempts + 1,
                delivered_to=param(_o.delivered_to),
                delivered_on=self._sql.now,
                next_attempt_at=None,
            )
            .returning(_o.id)
        )

    @cached_property
    def _retry_outbox_sql(self) -> ReturningUpdate[Any]:
        return (
            update(workflow_outbox)
            .where(self._claimed())
            .values(
                status=_PENDING,
                attempts=_o.attempts + 1,
                delivered_to=param(_o.delivered_to),
                last_error=param(_o.last_error),
                next_attempt_at=self._sql.lease_until,
            )
            .returning(_o.id)
        )

    @cached_property
    def _dead_letter_outbox_sql(self) -> ReturningUpdate[Any]:
        return (
            update(workflow_outbox)
            .where(self._claimed())
            .values(
                status=_DEAD,
                attempts=_o.attempts + 1,
                delivered_to=param(_o.delivered_to),
                last_error=param(_o.last_error),
                next_attempt_at=None,
            )
            .returning(_o.id)
        )

    @cached_property
    def _requeue_outbox_sql(self) -> ReturningUpdate[Any]:
        # delivered_to is kept: the sinks that had the event do not get it twice.
        return (
            update(workflow_outbox)
            .where(_o.id == param(_o.id), _o.status == _DEAD)
            .values(status=_PENDING, attempts=0, next_attempt_at=self._sql.now, claimed_by=None)
            .returning(*workflow_outbox.c)
        )

    # -- the processor's side ------------------------------------------------------------------

    async def claim_outbox(self, owner: str, limit: int, claim_timeout: timedelta) -> list[OutboxRecord]:
        """Claim up to ``limit`` due rows (oldest due first) for ``claim_timeout``."""
        if limit < 1:
            return []
        params = {"p_claimed_by": owner, "p_limit": limit} | self._clock(claim_timeout)

        async def claim(conn: AsyncConnection) -> list[OutboxRecord]:
            return [rows.outbox(r) for r in await conn.execute(self._claim_outbox_sql, params)]

        claimed = await self._write("claim_outbox", claim, autocommit=True)
        return sorted(claimed, key=lambda r: (r.created_on or _EPOCH, r.id))

    async def complete_outbox(self, outbox_id: str, owner: str, delivered_to: Sequence[str]) -> bool:
        """Mark one claimed row delivered; False when the claim is no longer ours."""
        return bool(await self.complete_outbox_many(owner, {outbox_id: delivered_to}))

    async def complete_outbox_many(self, owner: str, delivered: Mapping[str, Sequence[str]]) -> set[str]:
        """Mark claimed rows delivered (row id -> the sinks it reached); the ids that were still ours."""
        groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for outbox_id, sinks in delivered.items():
            groups[tuple(sinks)].append(outbox_id)
        if not groups:
            return set()
        clock = self._clock()
        # One statement per distinct set of sinks: usually one for the whole batch.
        statements = [
            {"p_claimed_by": owner, "p_ids": ids, "p_delivered_to": list(sinks) or None} | clock
            for sinks, ids in groups.items()
        ]

        async def complete(conn: AsyncConnection) -> set[str]:
            done: set[str] = set()
            for params in statements:
                done.update((await conn.execute(self._complete_outbox_sql, params)).scalars())
            return done

        return await self._write("complete_outbox", complete, autocommit=len(statements) == 1)

    async def retry_outbox(
        self, outbox_id: str, owner: str, delivered_to: Sequence[str], error: str, retry_in: timedelta
    ) -> bool:
        """Give a claimed row back as ``pending``, due ``retry_in`` from now (database clock)."""
        params = self._settle_params(outbox_id, owner, delivered_to, error) | self._clock(retry_in)
        return await self._settle("retry_outbox", self._retry_outbox_sql, params)

    async def dead_letter_outbox(
        self, outbox_id: str, owner: str, delivered_to: Sequence[str], error: str
    ) -> bool:
        """Give up on a claimed row: ``dead`` with its last error."""
        params = self._settle_params(outbox_id, owner, delivered_to, error) | self._clock()
        return await self._settle("dead_letter_outbox", self._dead_letter_outbox_sql, params)

    @staticmethod
    def _settle_params(outbox_id: str, owner: str, delivered_to: Sequence[str], error: str) -> dict[str, Any]:
        return {
            "p_id": outbox_id,
            "p_claimed_by": owner,
            "p_delivered_to": list(delivered_to) or None,
            "p_last_error": error,
        }

    async def _settle(self, operation: str, statement: Any, params: dict[str, Any]) -> bool:
        async def settle(conn: AsyncConnection) -> bool:
            return (await conn.execute(statement, params)).first() is not None

        return await self._write(operation, settle, autocommit=True)

    # -- operators' side -----------------------------------------------------------------------

    async def requeue_outbox(self, outbox_id: str) -> OutboxRecord:
        """A dead row back to ``pending``, attempts 0, due now."""
        params = {"p_id": outbox_id} | self._clock()

        async def requeue(conn: AsyncConnection) -> OutboxRecord:
            row = (await conn.execute(self._requeue_outbox_sql, params)).first()
            if row is not None:
                return rows.outbox(row)
            current = (await conn.execute(self._outbox_query(outbox_id))).first()
            if current is None:
                raise OutboxEventNotFound(f"outbox event {outbox_id} not found")
            raise InvalidTransition(
                f"outbox event {outbox_id} is {current.status}, not dead: only dead events can be re-queued"
            )

        return await self._write("requeue_outbox", requeue, autocommit=True)

    @staticmethod
    def _outbox_query(outbox_id: str) -> Select[Any]:
        return select(workflow_outbox).where(_o.id == outbox_id)

    async def get_outbox(self, outbox_id: str) -> OutboxRecord:
        """One row by id; ``OutboxEventNotFound`` otherwise."""
        async with self._reading("get_outbox") as conn:
            row = (await conn.execute(self._outbox_query(outbox_id))).first()
        if row is None:
            raise OutboxEventNotFound(f"outbox event {outbox_id} not found")
        return rows.outbox(row)

    async def count_outbox(self) -> dict[OutboxStatus, int]:
        """Rows per status, for ``pending``, ``processing`` and ``dead`` (zeros included).

        Delivered rows are not counted: they are the bulk of the table (kept for
        ``cleanup_service.outbox_event_retention``) and no index serves them.
        """
        # Two index-only counts (the partial indexes of undelivered and of dead rows).
        undelivered = (
            select(_o.status, func.count()).where(_o.status.in_([_PENDING, _PROCESSING])).group_by(_o.status)
        )
        dead = select(literal(_DEAD), func.count()).where(_o.status == _DEAD)
        counts = dict.fromkeys((OutboxStatus.PENDING, OutboxStatus.PROCESSING, OutboxStatus.DEAD), 0)
        async with self._reading("count_outbox") as conn:
            for status, count in await conn.execute(union_all(undelivered, dead)):
                counts[OutboxStatus(status)] = int(count)
        return counts

    async def page_outbox(
        self, *, status: OutboxStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[OutboxRecord], str | None]:
        """Rows oldest first, one page; the cursor is the last row's (created_on, id)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(workflow_outbox)
        if status is not None:
            query = query.where(_o.status == OutboxStatus(status).value)
        if cursor is not None:
            last_created, last_id = rows.decode_cursor(cursor)
            query = query.where(
                tuple_(_o.created_on, _o.id) > tuple_(literal(last_created, UTCDateTime()), last_id)
            )
        query = query.order_by(_o.created_on, _o.id).limit(limit + 1)
        async with self._reading("page_outbox") as conn:
            items = [rows.outbox(r) for r in await conn.execute(query)]
        if len(items) <= limit:
            return items, None
        items = items[:limit]
        last = items[-1]
        assert last.created_on is not None
        return items, rows.encode_cursor(last.created_on, last.id)


_EPOCH = datetime.min.replace(tzinfo=UTC)
