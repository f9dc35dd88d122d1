"""The SQL store: every port method written once over SQLAlchemy Core (async).

:class:`SqlStore` implements :class:`~flowkeeper.store.port.Store`; the SQLite and
PostgreSQL adapters only build engines and supply the dialect hooks (the clock, row
locking, insert-or-ignore, serialised writes). Each public method is one transaction
(or one autocommitted statement where a single statement is the whole write), and
every driver error leaves as a :class:`~flowkeeper.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, func, literal, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from flowkeeper.errors import (
    ConcurrencyConflict,
    DefinitionConflict,
    DefinitionNotFound,
    InstanceNotFound,
    StoreError,
)
from flowkeeper.records import (
    JSON,
    BookmarkRecord,
    Checkpoint,
    DefinitionRecord,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
    OutboxRecord,
    OutboxStatus,
    TimerRecord,
)
from flowkeeper.store import rows, schema, writes
from flowkeeper.store.cleanup_queries import CleanupQueries
from flowkeeper.store.connector import FusedWrite
from flowkeeper.store.control import InstanceControl
from flowkeeper.store.event_queries import EventQueries
from flowkeeper.store.failures import is_unique_violation
from flowkeeper.store.outbox_queries import OutboxQueries
from flowkeeper.store.port import Delivery, InstancePage, SchemaStatus
from flowkeeper.store.schedule_queries import ScheduleQueries
from flowkeeper.store.statement_batches import Row
from flowkeeper.store.statements import Statements
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
from flowkeeper.store.urls import DatabaseUrl

_d, _i, _b, _t, _l, _o, _e = (
    workflow_definition.c,
    workflow_instance.c,
    workflow_bookmark.c,
    workflow_timer.c,
    workflow_execution_log.c,
    workflow_outbox.c,
    workflow_event.c,
)


class SqlStore(InstanceControl, EventQueries, CleanupQueries, OutboxQueries, ScheduleQueries):
    """A :class:`~flowkeeper.store.port.Store` over an async SQLAlchemy engine."""

    def __init__(self, url: DatabaseUrl, **options: Any) -> None:
        super().__init__(url, **options)
        self._sql = Statements(self._now_sql(), self._lease_until_sql())

    async def migrate(self) -> None:
        """Upgrade the schema to the newest migration."""
        # Alembic keeps its running context in module globals: two upgrades interleaved
        # on one event loop would trample each other. Other processes are kept apart
        # by the database (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).
        async with schema.in_process_lock(), self._transaction("migrate") as conn:
            await conn.run_sync(schema.upgrade)

    async def schema_status(self) -> SchemaStatus:
        """The database's migration revision and the code's."""
        async with self._reading("schema_status") as conn:
            current = await conn.run_sync(schema.current_revision)
        return SchemaStatus(current=current, head=schema.head_revision())

    async def now(self) -> datetime:
        """The database clock (UTC)."""
        async with self._reading("now") as conn:
            return await self._read_clock(conn)

    # -- definitions ---------------------------------------------------------------------------

    async def put_definition(self, record: DefinitionRecord) -> tuple[DefinitionRecord, bool]:
        """Store a definition; same content again is a no-op, other content a conflict."""
        values = {
            "namespace": record.namespace,
            "name": record.name,
            "version": record.version,
            "document": record.document,
            "source": record.source,
            "content_hash": record.content_hash,
            "created_on": record.created_on or self._sql.now,
        }
        stmt = self._insert_or_ignore(workflow_definition).values(values).returning(*workflow_definition.c)

        # Definitions are never updated or deleted, so the follow-up read needs no
        # transaction around it.
        async def put(conn: AsyncConnection) -> tuple[DefinitionRecord, bool]:
            row = (await conn.execute(stmt, self._clock())).first()
            if row is not None:
                return rows.definition(row), True
            query = self._definition_query(record.namespace, record.name, record.version)
            row = (await conn.execute(query)).one()
            stored = rows.definition(row)
            if stored.content_hash != record.content_hash:
                raise DefinitionConflict(
                    f"definition {record.namespace}/{record.name}/{record.version} already exists "
                    "with different content (versions are immutable)"
                )
            return stored, False

        return await self._write("put_definition", put, autocommit=True)

    @staticmethod
    def _definition_query(namespace: str, name: str, version: str | None = None) -> Any:
        query = select(workflow_definition).where(_d.namespace == namespace, _d.name == name)
        return query if version is None else query.where(_d.version == version)

    async def get_definition(self, namespace: str, name: str, version: str | None = None) -> DefinitionRecord:
        """One version, or the highest semantic version when ``version`` is None."""
        async with self._reading("get_definition") as conn:
            found = [
                rows.definition(r)
                for r in await conn.execute(self._definition_query(namespace, name, version))
            ]
        if not found:
            which = f"{namespace}/{name}" + (f"/{version}" if version else "")
            raise DefinitionNotFound(f"definition {which} not found")
        # A handful of versions at most: order them here, where SemVer is easy.
        return max(found, key=lambda d: rows.version_key(d.version))

    async def list_definitions(self, namespace: str | None = None) -> list[DefinitionRecord]:
        """Every definition version, by namespace, name and semantic version."""
        query = select(workflow_definition)
        if namespace is not None:
            query = query.where(_d.namespace == namespace)
        async with self._reading("list_definitions") as conn:
            found = [rows.definition(r) for r in await conn.execute(query)]
        return sorted(found, key=lambda d: (d.namespace, d.name, rows.version_key(d.version)))

    # -- instances -----------------------------------------------------------------------------

    async def create_instance(
        self, record: InstanceRecord, checkpoint: Checkpoint | None = None
    ) -> InstanceRecord:
        """Insert an instance (optionally claimed) and, atomically, a first checkpoint's rows."""
        log = checkpoint.log if checkpoint else ()
        writes.check_log_owner(log, record.id)
        clock = self._clock()
        params = rows.instance_params(record, log_seq=len(log)) | clock
        # One statement when nothing but log rows comes along (fused on PostgreSQL).
        single = None
        if checkpoint is None or writes.only_log(checkpoint, record.status):
            single = self._fused_log_sql("create") if log else self._sql.create_instance
        if single is not None and log:
            params |= rows.log_columns(log) | {"p_log_count": len(log)}

        async def insert(conn: AsyncConnection) -> InstanceRecord:
            if single is not None:
                return rows.instance((await conn.execute(single, params)).one())
            assert checkpoint is not None
            row = (await conn.execute(self._sql.create_instance, params)).one()
            created = rows.instance(row)
            status = await writes.write_checkpoint_rows(
                conn,
                self._sql,
                checkpoint,
                record.id,
                InstanceStatus(record.status),
                1,
                clock,
                locks_rows=self.locks_rows,
            )
            return created if status is created.status else replace(created, status=status)

        try:
            batched = self._batched(single, "create_instance") if single is not None else None
            if batched is not None:
                found = await batched.fetch(params)
                if isinstance(found, Row):
                    return rows.instance(found)
                # RETRY_ALONE (a duplicate key in the batch, say): alone, it fails by itself.
            return await self._write("create_instance", insert, autocommit=single is not None)
        except StoreError as exc:
            if exc.__cause__ is not None and is_unique_violation(exc.__cause__):
                # The caller looked the key up first and lost a race: like any lost race,
                # a conflict (re-read the winner and compare).
                raise ConcurrencyConflict(
                    f"instance {record.id} already exists (same id or idempotency key): {exc.message}"
                ) from exc.__cause__
            raise

    async def find_instance_by_idempotency_key(self, key: str) -> InstanceRecord | None:
        """The instance started with this idempotency key, if any."""
        async with self._reading("find_instance_by_idempotency_key") as conn:
            row = (await conn.execute(select(workflow_instance).where(_i.idempotency_key == key))).first()
        return None if row is None else rows.instance(row)

    async def get_instance(self, instance_id: str) -> InstanceRecord:
        """An instance by id; ``InstanceNotFound`` otherwise."""
        async with self._reading("get_instance") as conn:
            row = (await conn.execute(select(workflow_instance).where(_i.id == instance_id))).first()
        if row is None:
            raise InstanceNotFound(f"instance {instance_id} not found")
        return rows.instance(row)

    async def list_instances(
        self,
        *,
        status: InstanceStatus | None = None,
        namespace: str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> InstancePage:
        """Newest first; the cursor is the last row's (created_on, id), so rows inserted
        between pages never shift or repeat what follows (keyset, not OFFSET)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(workflow_instance)
        if status is not None:
            query = query.where(_i.status == InstanceStatus(status).value)
        if namespace is not None:
            query = query.where(_i.namespace == namespace)
        if name is not None:
            query = query.where(_i.name == name)
        if created_after is not None:
            query = query.where(_i.created_on > created_after)
        if created_before is not None:
            query = query.where(_i.created_on < created_before)
        if cursor is not None:
            last_created, last_id = rows.decode_cursor(cursor)
            query = query.where(tuple_(_i.created_on, _i.id) < tuple_(_bind_ts(last_created), last_id))
        query = query.order_by(_i.created_on.desc(), _i.id.desc()).limit(limit + 1)
        async with self._reading("list_instances") as conn:
            items = [rows.instance(r) for r in await conn.execute(query)]
        if len(items) <= limit:
            return InstancePage(items=items, next_cursor=None)
        items = items[:limit]
        last = items[-1]
        assert last.created_on is not None
        return InstancePage(items=items, next_cursor=rows.encode_cursor(last.created_on, last.id))

    async def claim_instances(self, owner: str, lease: timedelta, limit: int) -> list[InstanceRecord]:
        """Lease up to ``limit`` runnable instances with a free or expired lease."""
        if limit < 1:
            return []
        params = {"p_lease_owner": owner, "p_limit": limit} | self._clock(lease)

        async def claim(conn: AsyncConnection) -> list[InstanceRecord]:
            return [rows.instance(r) for r in await conn.execute(self._sql.claim_batch, params)]

        claimed = await self._write("claim_instances", claim, autocommit=True)
        return sorted(claimed, key=lambda r: (r.created_on or datetime.min.replace(tzinfo=UTC), r.id))

    async def claim_instance(self, instance_id: str, owner: str, lease: timedelta) -> InstanceRecord | None:
        """Lease one instance if runnable and its lease is free or expired."""
        params = {"p_id": instance_id, "p_lease_owner": owner} | self._clock(lease)

        async def claim(conn: AsyncConnection) -> InstanceRecord | None:
            row = (await conn.execute(self._sql.claim_one, params)).first()
            return None if row is None else rows.instance(row)

        return await self._write("claim_instance", claim, autocommit=True)

    async def deliver_and_claim(
        self, bookmark_id: str, event_key: str, payload: JSON, owner: str, lease: timedelta
    ) -> Delivery:
        """Deliver, then claim the woken instance and read what its run resumes from."""
        if not await self.deliver_event(bookmark_id, event_key, payload):
            return Delivery(False)
        instance_id = await self._bookmark_instance(bookmark_id)
        claimed = None if instance_id is None else await self.claim_instance(instance_id, owner, lease)
        if claimed is None:
            return Delivery(True)
        consumed, timers = await asyncio.gather(
            self.list_bookmarks(claimed.id, consumed=True), self.list_timers(claimed.id)
        )
        return Delivery(True, claimed, tuple(consumed), tuple(timers))

    async def _bookmark_instance(self, bookmark_id: str) -> str | None:
        query = select(_b.instance_id).where(_b.id == bookmark_id)
        async with self._reading("deliver_and_claim") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else str(row.instance_id)

    async def renew_lease(self, instance_id: str, owner: str, fencing_token: int, lease: timedelta) -> bool:
        """Extend our lease; False when another claim took it."""
        params = {"p_id": instance_id, "p_lease_owner": owner, "p_fencing_token": fencing_token}

        async def renew(conn: AsyncConnection) -> bool:
            return (await conn.execute(self._sql.renew, params | self._clock(lease))).rowcount > 0

        return await self._write("renew_lease", renew, autocommit=True)

    async def release_instance(self, instance_id: str, owner: str, fencing_token: int) -> None:
        """Give the lease back (nothing happens if it is no longer ours)."""
        params = {"p_id": instance_id, "p_lease_owner": owner, "p_fencing_token": fencing_token}

        async def release(conn: AsyncConnection) -> None:
            await conn.execute(self._sql.release, params)

        await self._write("release_instance", release, autocommit=True)

    async def checkpoint(self, checkpoint: Checkpoint) -> InstanceRecord:
        """Write one step atomically; ``ConcurrencyConflict`` (and nothing written) for a stale writer."""
        cp = checkpoint
        writes.check_log_owner(cp.log, cp.instance_id)
        params = {
            "p_id": cp.instance_id,
            "p_expected_row_version": cp.expected_row_version,
            "p_fencing_token": cp.fencing_token,
            "p_lease_owner": cp.lease_owner,
            "p_status": InstanceStatus(cp.status).value,
            "p_state": cp.state,
            "p_output": cp.output,
            "p_error": cp.error,
            "p_current_activity_id": cp.current_activity_id,
            "p_started_on": cp.started_on,
            "p_completed_on": cp.completed_on,
            "p_log_count": len(cp.log),
        }
        clock = self._clock()
        stmt = self._sql.checkpoint_release_lease if cp.release_lease else self._sql.checkpoint_keep_lease
        if writes.only_log(cp, cp.status, bookmark_deletes=self.fuses_bookmark_deletes):
            # The hot path (a step that only logged, or also applied its consumed
            # bookmarks): one statement, autocommitted. On PostgreSQL the log rows and
            # the bookmark deletes ride in the same statement as the guarded UPDATE.
            write: FusedWrite = "checkpoint_release_lease" if cp.release_lease else "checkpoint"
            gone = [*cp.applied_bookmarks, *cp.cancelled_bookmarks]
            fused = self._fused_log_sql(write) if cp.log or gone else stmt
            if fused is not None:
                if fused is not stmt:
                    params |= rows.log_columns(cp.log) | {"p_gone": gone}

                async def update(conn: AsyncConnection) -> InstanceRecord:
                    row = (await conn.execute(fused, params | clock)).first()
                    if row is None:
                        raise await writes.conflict(conn, cp)
                    return rows.instance(row)

                batched = self._batched(fused, "checkpoint")
                if batched is not None:
                    found = await batched.fetch(params | clock)
                    if isinstance(found, Row):
                        return rows.instance(found)
                    if found is None:
                        async with self._reading("checkpoint") as conn:
                            raise await writes.conflict(conn, cp)
                    # RETRY_ALONE: the batch failed on a statement error; alone, it
                    # fails (or succeeds) by itself.
                return await self._write("checkpoint", update, autocommit=True)

        async def update_and_add(conn: AsyncConnection) -> InstanceRecord:
            # The guarded UPDATE goes first: when it matches nothing, nothing else has
            # been written yet and the rollback is trivial.
            row = (await conn.execute(stmt, params | clock)).first()
            if row is None:
                raise await writes.conflict(conn, cp)
            updated = rows.instance(row)
            first_seq = row._mapping["log_seq"] - len(cp.log) + 1
            status = await writes.write_checkpoint_rows(
                conn,
                self._sql,
                cp,
                cp.instance_id,
                updated.status,
                first_seq,
                clock,
                locks_rows=self.locks_rows,
            )
            return updated if status is updated.status else replace(updated, status=status)

        return await self._write("checkpoint", update_and_add)

    # -- bookmarks -----------------------------------------------------------------------------

    async def list_bookmarks(self, instance_id: str, *, consumed: bool | None = None) -> list[BookmarkRecord]:
        """An instance's bookmarks, oldest first."""
        query = select(workflow_bookmark).where(_b.instance_id == instance_id)
        if consumed is not None:
            query = query.where(_b.is_consumed == (true() if consumed else false()))
        async with self._reading("list_bookmarks") as conn:
            return [rows.bookmark(r) for r in await conn.execute(query.order_by(_b.created_on, _b.id))]

    async def resume_bookmark(self, bookmark_id: str, payload: JSON) -> bool:
        """Consume one bookmark exactly once; False when it was consumed already or is gone."""

        async def consume(conn: AsyncConnection) -> bool:
            consumed = await writes.consume(
                conn, self._sql, [(bookmark_id, payload)], self._clock(), locks_rows=self.locks_rows
            )
            return bool(consumed)

        return await self._write("resume_bookmark", consume)

    # -- timers --------------------------------------------------------------------------------

    async def next_timer_due(self, instance_ids: Sequence[str] | None = None) -> datetime | None:
        """The earliest due time, overall or among ``instance_ids``."""
        query = select(func.min(_t.due_at))
        if instance_ids is not None:
            if not instance_ids:
                return None
            query = query.where(_t.instance_id.in_(list(instance_ids)))
        async with self._reading("next_timer_due") as conn:
            due: datetime | None = (await conn.execute(query)).scalar()
        return due

    async def next_timer_and_now(self) -> tuple[datetime | None, datetime]:
        """The earliest due time and the database clock, read together."""
        query = select(func.min(_t.due_at), self._clock_reading_sql())
        async with self._reading("next_timer_due") as conn:
            due, now = (await conn.execute(query, self._clock())).one()
        return due, now

    async def fire_due_timers(self, limit: int, now: datetime | None = None) -> list[TimerRecord]:
        """Delete due timers and consume their bookmarks, in one transaction."""
        if limit < 1:
            return []

        async def fire(conn: AsyncConnection) -> list[TimerRecord]:
            return await self._fire(conn, limit, now)

        fired = await self._write("fire_due_timers", fire)
        return sorted(fired, key=lambda t: (t.due_at, t.id))

    async def _fire(
        self, conn: AsyncConnection, limit: int, now: datetime | None, ahead: timedelta = timedelta(0)
    ) -> list[TimerRecord]:
        moment = now if now is not None else await self._read_clock(conn)
        locked = await conn.execute(self._sql.lock_due_timers, {"p_due": moment, "p_limit": limit})
        due = list(locked.scalars())
        if ahead > timedelta(0) and len(due) < limit:
            soon = {"p_due": moment, "p_soon": moment + ahead, "p_limit": limit - len(due)}
            due += (await conn.execute(self._sql.lock_timers_due_soon, soon)).scalars()
        if not due:
            return []
        fired = [rows.timer(r) for r in await conn.execute(self._sql.delete_fired_timers, {"p_ids": due})]
        if fired:
            payloads = [
                (t.bookmark_id, {"timer": t.id, "firedAt": max(moment, t.due_at).astimezone(UTC).isoformat()})
                for t in fired
            ]
            await writes.consume(conn, self._sql, payloads, self._clock(), locks_rows=self.locks_rows)
        return fired

    async def fire_and_claim_timers(
        self, limit: int, owner: str, lease: timedelta, ahead: timedelta = timedelta(0)
    ) -> tuple[list[TimerRecord], list[Delivery]]:
        """Fire due timers, claim their instances and read what their runs resume from, in
        one write transaction (PostgreSQL overrides this with one function call)."""
        if limit < 1:
            return [], []
        claim = {"p_lease_owner": owner} | self._clock(lease)

        async def fire(conn: AsyncConnection) -> tuple[list[TimerRecord], list[Delivery]]:
            fired = await self._fire(conn, limit, None, ahead)
            claimed: list[Delivery] = []
            for instance_id in dict.fromkeys(t.instance_id for t in fired):
                row = (await conn.execute(self._sql.claim_one, claim | {"p_id": instance_id})).first()
                if row is None:
                    continue
                consumed = (
                    select(workflow_bookmark)
                    .where(_b.instance_id == instance_id, _b.is_consumed == true())
                    .order_by(_b.created_on, _b.id)
                )
                timers = (
                    select(workflow_timer).where(_t.instance_id == instance_id).order_by(_t.due_at, _t.id)
                )
                claimed.append(
                    Delivery(
                        True,
                        rows.instance(row),
                        tuple(rows.bookmark(r) for r in await conn.execute(consumed)),
                        tuple(rows.timer(r) for r in await conn.execute(timers)),
                    )
                )
            return fired, claimed

        fired, claimed = await self._write("fire_due_timers", fire)
        return sorted(fired, key=lambda t: (t.due_at, t.id)), claimed

    async def count_due_timers(self) -> int:
        """Timers due now (database clock) and not fired yet: a backlog when it stays above 0."""
        query = select(func.count()).select_from(workflow_timer).where(_t.due_at <= self._sql.now)
        async with self._reading("count_due_timers") as conn:
            return int((await conn.execute(query, self._clock())).scalar_one())

    async def list_timers(self, instance_id: str) -> list[TimerRecord]:
        """An instance's pending timers, earliest first."""
        query = select(workflow_timer).where(_t.instance_id == instance_id).order_by(_t.due_at, _t.id)
        async with self._reading("list_timers") as conn:
            return [rows.timer(r) for r in await conn.execute(query)]

    # -- execution log and outbox ----------------------------------------------------------------

    async def get_log(self, instance_id: str) -> list[LogEntry]:
        """An instance's execution log in ``seq`` order."""
        query = select(workflow_execution_log).where(_l.instance_id == instance_id).order_by(_l.seq)
        async with self._reading("get_log") as conn:
            return [rows.log_entry(r) for r in await conn.execute(query)]

    async def list_outbox(self, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxRecord]:
        """Outbox rows, oldest first."""
        query = select(workflow_outbox)
        if status is not None:
            query = query.where(_o.status == OutboxStatus(status).value)
        query = query.order_by(_o.created_on, _o.id).limit(limit)
        async with self._reading("list_outbox") as conn:
            return [rows.outbox(r) for r in await conn.execute(query)]


def _bind_ts(value: datetime) -> ColumnElement[Any]:
    return literal(value, UTCDateTime())
