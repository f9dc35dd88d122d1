"""The SQL store: every port method written once over SQLAlchemy Core (async).

:class:`SqlStore` implements :class:`~flowkeeper.store.port.Store`; the SQLite and
PostgreSQL adapters only build engines and supply the dialect hooks (the clock, row
locking, insert-or-ignore, serialised writes). Each public method is one transaction
(or one autocommitted statement where a single statement is the whole write), and
every driver error leaves as a :class:`~flowkeeper.errors.StoreError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Executable, Insert, Table, false, func, literal, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowkeeper.errors import (
    ConcurrencyConflict,
    DefinitionConflict,
    DefinitionNotFound,
    FlowkeeperError,
    InstanceNotFound,
    StoreError,
)
from flowkeeper.records import (
    JSON,
    BookmarkKind,
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
from flowkeeper.store import rows, schema
from flowkeeper.store.failures import ErrorTranslator, is_unique_violation
from flowkeeper.store.port import InstancePage, SchemaStatus
from flowkeeper.store.statements import Statements
from flowkeeper.store.tables import (
    UTCDateTime,
    workflow_bookmark,
    workflow_definition,
    workflow_execution_log,
    workflow_instance,
    workflow_outbox,
    workflow_timer,
)
from flowkeeper.store.urls import DatabaseUrl

_d, _i, _b, _t, _l, _o = (
    workflow_definition.c,
    workflow_instance.c,
    workflow_bookmark.c,
    workflow_timer.c,
    workflow_execution_log.c,
    workflow_outbox.c,
)
# Our own errors and caller mistakes pass through untranslated.
_PASSTHROUGH = (FlowkeeperError, ValueError, TypeError)


class SqlStore:
    """A :class:`~flowkeeper.store.port.Store` over an async SQLAlchemy engine."""

    #: Whether ``SELECT ... FOR UPDATE`` means anything (PostgreSQL) or writers are
    #: serialised anyway (SQLite), in which case the explicit row locks are skipped.
    locks_rows: ClassVar[bool] = False

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        min_pool_size: int = 10,
        max_pool_size: int = 100,
        connect_timeout: float = 30,
        command_timeout: float = 60,
        echo: bool = False,
    ) -> None:
        if not 0 <= min_pool_size <= max_pool_size or max_pool_size < 1:
            raise ValueError("need 0 <= min_pool_size <= max_pool_size and max_pool_size >= 1")
        self._db_url = url
        #: The URL with its password masked (safe to log).
        self.url = url.safe
        self.min_pool_size = min_pool_size
        self.max_pool_size = max_pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.echo = echo
        self._errors = ErrorTranslator(url.password)
        self._writer: AsyncEngine | None = None  # transactions
        self._autocommit: AsyncEngine | None = None  # single-statement writes
        self._reader: AsyncEngine | None = None
        self._sql = Statements(self._now_sql(), self._lease_until_sql())

    # -- dialect hooks -------------------------------------------------------------------------

    def _create_engines(self) -> tuple[AsyncEngine, AsyncEngine, AsyncEngine]:
        """(transactional writer, autocommit writer, reader) engines; they may share a pool."""
        raise NotImplementedError

    def _now_sql(self) -> ColumnElement[Any]:
        """The clock as SQL (``now()`` or a bound ``p_now``)."""
        raise NotImplementedError

    def _lease_until_sql(self) -> ColumnElement[Any]:
        """The clock plus a lease as SQL (binds ``p_lease`` or ``p_lease_until``)."""
        raise NotImplementedError

    def _clock(self, lease: timedelta | None = None) -> dict[str, Any]:
        """Bind values the clock expressions need for one statement."""
        raise NotImplementedError

    async def _read_clock(self, conn: AsyncConnection) -> datetime:
        """The database clock, read through ``conn``."""
        raise NotImplementedError

    def _insert_or_ignore(self, table: Table) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` for ``table``."""
        raise NotImplementedError

    def _fused_checkpoint_sql(self, release_lease: bool) -> Executable | None:
        """One statement doing the checkpoint UPDATE and inserting log rows from
        ``rows.log_columns`` arrays, returning the instance row; None when the dialect
        cannot (then two statements in a transaction do it)."""
        return None

    def _write_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around every write (SQLite: the in-process writer lock)."""
        return contextlib.nullcontext()

    def _read_guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around every read (in-memory SQLite shares one connection)."""
        return contextlib.nullcontext()

    # -- connections ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(
        self, operation: str, *, autocommit: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction; ``autocommit`` when the write is one self-contained statement."""
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        assert self._autocommit is not None
        engine = self._autocommit if autocommit else self._writer
        try:
            async with self._write_guard(), engine.begin() as conn:
                yield conn
        except _PASSTHROUGH:
            raise
        except Exception as exc:
            raise self._errors.translate(exc, operation) from exc

    @contextlib.asynccontextmanager
    async def _reading(self, operation: str) -> AsyncIterator[AsyncConnection]:
        if self._reader is None:
            await self.open()
        assert self._reader is not None
        try:
            async with self._read_guard(), self._reader.connect() as conn:
                yield conn
        except _PASSTHROUGH:
            raise
        except Exception as exc:
            raise self._errors.translate(exc, operation) from exc

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the engines and make one connection, so a bad URL fails here."""
        if self._writer is not None:
            return
        self._writer, self._autocommit, self._reader = self._create_engines()
        try:
            async with self._write_guard(), self._writer.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            await self.close()
            raise self._errors.translate(exc, "open") from exc

    async def close(self) -> None:
        """Dispose of the pools; the store may be opened again."""
        engines = {id(e): e for e in (self._writer, self._autocommit, self._reader) if e is not None}
        self._writer = self._autocommit = self._reader = None
        for engine in engines.values():
            await engine.dispose()

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

    async def ping(self) -> None:
        """One cheap round trip; ``StoreUnavailable`` when the database cannot be reached."""
        async with self._reading("ping") as conn:
            await conn.exec_driver_sql("SELECT 1")

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
        async with self._transaction("put_definition", autocommit=True) as conn:
            row = (await conn.execute(stmt, self._clock())).first()
            if row is None:
                row = (
                    await conn.execute(self._definition_query(record.namespace, record.name, record.version))
                ).one()
                stored = rows.definition(row)
                if stored.content_hash != record.content_hash:
                    raise DefinitionConflict(
                        f"definition {record.namespace}/{record.name}/{record.version} already exists "
                        "with different content (versions are immutable)"
                    )
                return stored, False
        return rows.definition(row), True

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
        _check_log_owner(log, record.id)
        clock = self._clock()
        params = rows.instance_params(record, log_seq=len(log)) | clock
        try:
            async with self._transaction("create_instance", autocommit=checkpoint is None) as conn:
                row = (await conn.execute(self._sql.create_instance, params)).one()
                created = rows.instance(row)
                if checkpoint is None:
                    return created
                status = await self._write_checkpoint_rows(
                    conn, checkpoint, record.id, record.status, 1, clock
                )
                return created if status is created.status else replace(created, status=status)
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
        async with self._transaction("claim_instances", autocommit=True) as conn:
            claimed = [rows.instance(r) for r in await conn.execute(self._sql.claim_batch, params)]
        return sorted(claimed, key=lambda r: (r.created_on or datetime.min.replace(tzinfo=UTC), r.id))

    async def claim_instance(self, instance_id: str, owner: str, lease: timedelta) -> InstanceRecord | None:
        """Lease one instance if runnable and its lease is free, expired or ours."""
        params = {"p_id": instance_id, "p_lease_owner": owner} | self._clock(lease)
        async with self._transaction("claim_instance", autocommit=True) as conn:
            row = (await conn.execute(self._sql.claim_one, params)).first()
        return None if row is None else rows.instance(row)

    async def renew_lease(self, instance_id: str, owner: str, fencing_token: int, lease: timedelta) -> bool:
        """Extend our lease; False when another claim took it."""
        params = {"p_id": instance_id, "p_lease_owner": owner, "p_fencing_token": fencing_token}
        async with self._transaction("renew_lease", autocommit=True) as conn:
            result = await conn.execute(self._sql.renew, params | self._clock(lease))
        return result.rowcount > 0

    async def release_instance(self, instance_id: str, owner: str, fencing_token: int) -> None:
        """Give the lease back (nothing happens if it is no longer ours)."""
        params = {"p_id": instance_id, "p_lease_owner": owner, "p_fencing_token": fencing_token}
        async with self._transaction("release_instance", autocommit=True) as conn:
            await conn.execute(self._sql.release, params)

    async def checkpoint(self, checkpoint: Checkpoint) -> InstanceRecord:
        """Write one step atomically; ``ConcurrencyConflict`` (and nothing written) for a stale writer."""
        cp = checkpoint
        _check_log_owner(cp.log, cp.instance_id)
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
        if _only_log(cp):
            # The hot path (a step that only logged): one statement, autocommitted. On
            # PostgreSQL the log rows ride in the same statement as the guarded UPDATE.
            fused = self._fused_checkpoint_sql(cp.release_lease) if cp.log else stmt
            if fused is not None:
                if cp.log:
                    params |= rows.log_columns(cp.log)
                async with self._transaction("checkpoint", autocommit=True) as conn:
                    row = (await conn.execute(fused, params | clock)).first()
                    if row is None:
                        raise await self._conflict(conn, cp)
                return rows.instance(row)
        async with self._transaction("checkpoint") as conn:
            # The guarded UPDATE goes first: when it matches nothing, nothing else has
            # been written yet and the rollback is trivial.
            row = (await conn.execute(stmt, params | clock)).first()
            if row is None:
                raise await self._conflict(conn, cp)
            updated = rows.instance(row)
            first_seq = row._mapping["log_seq"] - len(cp.log) + 1
            status = await self._write_checkpoint_rows(
                conn, cp, cp.instance_id, updated.status, first_seq, clock
            )
        return updated if status is updated.status else replace(updated, status=status)

    async def _conflict(self, conn: AsyncConnection, cp: Checkpoint) -> ConcurrencyConflict:
        query = select(_i.row_version, _i.fencing_token, _i.lease_owner).where(_i.id == cp.instance_id)
        found = (await conn.execute(query)).first()
        if found is None:
            return ConcurrencyConflict(
                f"checkpoint of instance {cp.instance_id}: the instance no longer exists"
            )
        return ConcurrencyConflict(
            f"checkpoint of instance {cp.instance_id} rejected (stale writer): expected row_version "
            f"{cp.expected_row_version}, fencing token {cp.fencing_token}, owner {cp.lease_owner!r}; "
            f"found {found.row_version}, {found.fencing_token}, {found.lease_owner!r}"
        )

    async def _write_checkpoint_rows(
        self,
        conn: AsyncConnection,
        cp: Checkpoint,
        instance_id: str,
        status: InstanceStatus,
        first_seq: int,
        clock: dict[str, Any],
    ) -> InstanceStatus:
        """Everything of a checkpoint but the instance row; returns the instance's final status.

        Empty collections cost no statement; multi-row inserts are one executemany each.
        """
        if cp.new_instances:
            await self._insert_many(
                conn, self._sql.insert_instance, (rows.instance_params(r, 0) for r in cp.new_instances), clock
            )
        # Deletes before inserts, so a bookmark may be replaced by one with the same id.
        gone = [*cp.applied_bookmarks, *cp.cancelled_bookmarks]
        if gone:
            await conn.execute(self._sql.delete_bookmarks, {"p_instance_id": instance_id, "p_ids": gone})
        if cp.cancelled_timers:
            await conn.execute(
                self._sql.delete_timers, {"p_instance_id": instance_id, "p_ids": list(cp.cancelled_timers)}
            )
        if cp.new_bookmarks:
            await self._insert_many(
                conn, self._sql.insert_bookmark, map(rows.bookmark_params, cp.new_bookmarks), clock
            )
        if cp.new_timers:
            await self._insert_many(
                conn, self._sql.insert_timer, map(rows.timer_params, cp.new_timers), clock
            )
        if cp.outbox:
            await self._insert_many(conn, self._sql.insert_outbox, map(rows.outbox_params, cp.outbox), clock)
        if cp.log:
            log = (rows.log_params(e, instance_id, first_seq + n) for n, e in enumerate(cp.log))
            await self._insert_many(conn, self._sql.insert_log, log, {})
        woken: set[str] = set()
        if cp.resume_bookmarks:
            woken = await self._consume(
                conn, [(r.bookmark_id, r.payload) for r in cp.resume_bookmarks], clock
            )
        if status is InstanceStatus.SUSPENDED:
            if instance_id in woken:
                return InstanceStatus.RUNNING
            # A consumed bookmark means work to do: an event that arrived while we ran,
            # or a bookmark created consumed. Run as its own statement, after the
            # writes above and (on PostgreSQL) after any resumer holding our row has
            # committed, so it sees that resumer's bookmark.
            if (await conn.execute(self._sql.wake_if_consumed, {"p_id": instance_id})).first() is not None:
                return InstanceStatus.RUNNING
        return status

    @staticmethod
    async def _insert_many(
        conn: AsyncConnection, stmt: Insert, params: Iterable[dict[str, Any]], clock: dict[str, Any]
    ) -> None:
        batch = [p | clock for p in params] if clock else list(params)
        await conn.execute(stmt, batch[0] if len(batch) == 1 else batch)

    # -- bookmarks -----------------------------------------------------------------------------

    async def _consume(
        self, conn: AsyncConnection, items: Sequence[tuple[str, JSON]], clock: dict[str, Any]
    ) -> set[str]:
        """Consume the not-yet-consumed bookmarks among ``items``; make their instances runnable.

        Returns the ids of the instances whose bookmarks were consumed. Exactly once:
        the bookmark rows are locked (on SQLite, writers are serialised) before the
        ``is_consumed = false`` check that decides. Four statements whatever the count.
        """
        ids = sorted({bookmark_id for bookmark_id, _ in items})
        if self.locks_rows:
            # Instance rows before bookmark rows: the order checkpoints lock in.
            await conn.execute(self._sql.lock_bookmark_instances, {"p_ids": ids})
        free = {
            r.id: r.instance_id
            for r in await conn.execute(self._sql.lock_unconsumed_bookmarks, {"p_ids": ids})
        }
        if not free:
            return set()
        batch: dict[str, dict[str, Any]] = {}
        for bookmark_id, payload in items:
            if bookmark_id in free and bookmark_id not in batch:  # the first payload wins
                batch[bookmark_id] = {"p_id": bookmark_id, "p_payload": payload} | clock
        updates = list(batch.values())
        await conn.execute(self._sql.consume_bookmark, updates[0] if len(updates) == 1 else updates)
        owners = set(free.values())
        await conn.execute(self._sql.make_runnable, {"p_ids": sorted(owners)} | clock)
        return owners

    async def list_bookmarks(self, instance_id: str, *, consumed: bool | None = None) -> list[BookmarkRecord]:
        """An instance's bookmarks, oldest first."""
        query = select(workflow_bookmark).where(_b.instance_id == instance_id)
        if consumed is not None:
            query = query.where(_b.is_consumed == (true() if consumed else false()))
        async with self._reading("list_bookmarks") as conn:
            return [rows.bookmark(r) for r in await conn.execute(query.order_by(_b.created_on, _b.id))]

    async def find_event_bookmarks(self, event_type: str) -> list[BookmarkRecord]:
        """Unconsumed event bookmarks for ``event_type`` or for any type (NULL)."""
        query = (
            select(workflow_bookmark)
            .where(
                _b.kind == BookmarkKind.EVENT.value,
                _b.is_consumed == false(),
                (_b.event_type == event_type) | _b.event_type.is_(None),
            )
            .order_by(_b.created_on, _b.id)
        )
        async with self._reading("find_event_bookmarks") as conn:
            return [rows.bookmark(r) for r in await conn.execute(query)]

    async def resume_bookmark(self, bookmark_id: str, payload: JSON) -> bool:
        """Consume one bookmark exactly once; False when it was consumed already or is gone."""
        async with self._transaction("resume_bookmark") as conn:
            return bool(await self._consume(conn, [(bookmark_id, payload)], self._clock()))

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

    async def fire_due_timers(self, limit: int, now: datetime | None = None) -> list[TimerRecord]:
        """Delete due timers and consume their bookmarks, in one transaction."""
        if limit < 1:
            return []
        async with self._transaction("fire_due_timers") as conn:
            moment = now if now is not None else await self._read_clock(conn)
            due = list(
                (await conn.execute(self._sql.lock_due_timers, {"p_due": moment, "p_limit": limit})).scalars()
            )
            if not due:
                return []
            fired = [rows.timer(r) for r in await conn.execute(self._sql.delete_fired_timers, {"p_ids": due})]
            fired_at = moment.astimezone(UTC).isoformat()
            if fired:
                payloads = [(t.bookmark_id, {"timer": t.id, "firedAt": fired_at}) for t in fired]
                await self._consume(conn, payloads, self._clock())
        return sorted(fired, key=lambda t: (t.due_at, t.id))

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


def _only_log(cp: Checkpoint) -> bool:
    """True when a checkpoint changes nothing but the instance row and its log."""
    return InstanceStatus(cp.status) is not InstanceStatus.SUSPENDED and not (
        cp.new_instances
        or cp.new_bookmarks
        or cp.applied_bookmarks
        or cp.cancelled_bookmarks
        or cp.new_timers
        or cp.cancelled_timers
        or cp.outbox
        or cp.resume_bookmarks
    )


def _check_log_owner(log: Sequence[LogEntry], instance_id: str) -> None:
    # Sequence numbers are per instance and come from that instance's row: a log entry
    # of another instance cannot be numbered here.
    for entry in log:
        if entry.instance_id != instance_id:
            raise ValueError(
                f"log entry of instance {entry.instance_id} in a write for instance {instance_id}"
            )


def _bind_ts(value: datetime) -> ColumnElement[Any]:
    return literal(value, UTCDateTime())
