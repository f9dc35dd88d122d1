"""PostgreSQL adapter: asyncpg under SQLAlchemy's async engine.

Leases, due timers and ``updated_on`` use the database clock (``now()``), so replicas
with skewed clocks still agree. Row locks (``FOR UPDATE SKIP LOCKED``) let claimers and
timer services run side by side without ever taking the same row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Executable,
    Insert,
    Integer,
    Interval,
    Select,
    Table,
    Text,
    bindparam,
    delete,
    event,
    false,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from flowkeeper.records import JSON, InstanceStatus, TimerRecord
from flowkeeper.store import rows
from flowkeeper.store.base import SqlStore
from flowkeeper.store.connector import FusedWrite
from flowkeeper.store.notifications import Listener, PostgresListener
from flowkeeper.store.port import Delivery
from flowkeeper.store.statement_batches import BatchedStatement
from flowkeeper.store.statements import Statements
from flowkeeper.store.tables import (
    UTCDateTime,
    workflow_bookmark,
    workflow_event,
    workflow_event_delivery,
    workflow_execution_log,
    workflow_instance,
)


class PostgresStore(SqlStore):
    """The :class:`~flowkeeper.store.port.Store` on PostgreSQL."""

    locks_rows: ClassVar[bool] = True
    warms_pool: ClassVar[bool] = True
    fuses_bookmark_deletes: ClassVar[bool] = True

    def _create_engines(self) -> tuple[AsyncEngine, AsyncEngine, AsyncEngine]:
        engine = create_async_engine(
            self._db_url.sqlalchemy_url,
            # The pool keeps every connection it opens (opened on demand, up to the
            # maximum): a smaller pool_size plus overflow would close and reopen
            # connections under load, each reopening costing several round trips.
            # open() makes the first min_pool_size of them.
            pool_size=self.max_pool_size,
            max_overflow=0,
            # The most recently used connection first: the few a steady load needs stay
            # warm (their server processes' caches, their prepared plans) instead of
            # every pooled connection taking turns, each cold at first.
            pool_use_lifo=True,
            pool_timeout=self.connect_timeout,
            echo=self.echo,
            connect_args={
                "timeout": self.connect_timeout,
                "command_timeout": self.command_timeout,
                "server_settings": {"application_name": "flowkeeper"},
            },
        )
        batched = [str(self._fused[w].compile(dialect=engine.dialect)) for w in _BATCHED_WRITES]
        warm = functools.partial(_prepare, [*_COMPOSITE_RESULTS, *batched])
        event.listen(engine.sync_engine, "connect", warm)
        # Connections opened before the migrations ran (a fresh database) try again.
        event.listen(engine.sync_engine, "checkout", lambda dbapi, record, _proxy: warm(dbapi, record))
        # One pool, two modes: a statement that is the whole write (a claim, a lease
        # renewal) and every read run in autocommit, which spares the BEGIN and
        # COMMIT round trips; multi-statement writes get a real transaction.
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        return engine, autocommit, autocommit

    def _now_sql(self) -> ColumnElement[Any]:
        return func.now(type_=UTCDateTime())

    def _lease_until_sql(self) -> ColumnElement[Any]:
        return func.now(type_=UTCDateTime()) + bindparam("p_lease", type_=Interval())

    def _clock(self, lease: timedelta | None = None) -> dict[str, Any]:
        return {} if lease is None else {"p_lease": lease}

    def _clock_reading_sql(self) -> ColumnElement[Any]:
        # now() is when the transaction started, which need not be when the statement ran.
        return func.clock_timestamp(type_=UTCDateTime())

    async def _read_clock(self, conn: AsyncConnection) -> datetime:
        value = (await conn.exec_driver_sql("SELECT clock_timestamp()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def _insert_or_ignore(self, table: Table) -> Insert:
        return pg_insert(table).on_conflict_do_nothing()

    def _fused_log_sql(self, write: FusedWrite) -> Executable | None:
        return self._fused[write]

    @cached_property
    def _fused(self) -> dict[FusedWrite, Select[Any]]:
        return {
            "create": _fuse_log_insert(self._sql.create_instance),
            "checkpoint": _fuse_log_insert(self._sql.checkpoint_keep_lease, delete_gone=True),
            "checkpoint_release_lease": _fuse_log_insert(
                self._sql.checkpoint_release_lease, delete_gone=True
            ),
        }

    def _fused_delivery_sql(self) -> Executable | None:
        return self._fused_delivery

    def _batched(self, statement: Executable, operation: str) -> BatchedStatement | None:
        engine = self._autocommit
        if engine is None:
            return None
        batched = self._batches.get(id(statement))
        # A store opened again has new engines: the old batcher's pool is gone.
        if batched is None or batched.engine is not engine:
            batched = BatchedStatement(
                statement,
                engine=engine,
                table=workflow_instance,
                key=("p_id", "id"),
                operation=operation,
                on_failure=self._failed,
                timeout=self.command_timeout,
            )
            self._batches[id(statement)] = batched
        return batched

    @cached_property
    def _batches(self) -> dict[int, BatchedStatement]:
        # Keyed by id(): the statements are this store's cached properties, alive as long as it.
        return {}

    async def fire_and_claim_timers(
        self, limit: int, owner: str, lease: timedelta, ahead: timedelta = timedelta(0)
    ) -> tuple[list[TimerRecord], list[Delivery]]:
        """One call of ``flowkeeper_fire_timers`` (migrations 0006, 0007)."""
        if limit < 1:
            return [], []
        params = {"p_limit": limit, "p_owner": owner, "p_lease": lease, "p_ahead": ahead}

        async def fire(conn: AsyncConnection) -> tuple[list[TimerRecord], list[Delivery]]:
            fired: list[TimerRecord] = []
            claimed: list[Delivery] = []
            for row in await conn.execute(_FIRE_AND_CLAIM, params):
                if row.fired is not None:
                    fired.append(rows.timer(_Composite(row.fired)))
                else:
                    claimed.append(
                        Delivery(
                            True,
                            rows.instance(_Composite(row.claimed)),
                            tuple(rows.bookmark(_Composite(b)) for b in row.consumed or ()),
                            tuple(rows.timer(_Composite(t)) for t in row.timers or ()),
                        )
                    )
            return fired, claimed

        return await self._write("fire_due_timers", fire, autocommit=True)

    def notification_listener(self, on_note: Callable[[str], None]) -> Listener | None:
        return PostgresListener(self._db_url, on_note, connect_timeout=self.connect_timeout)

    async def deliver_and_claim(
        self, bookmark_id: str, event_key: str, payload: JSON, owner: str, lease: timedelta
    ) -> Delivery:
        """One call of ``flowkeeper_deliver_event`` (migration 0006): the lock, the
        delivery, the claim and the reads of the resume in one round trip."""
        params = {
            "p_bookmark_id": bookmark_id,
            "p_event_key": event_key,
            "p_payload": payload,
            "p_owner": owner,
            "p_lease": lease,
        }

        async def deliver(conn: AsyncConnection) -> Delivery:
            row = (await conn.execute(_DELIVER_AND_CLAIM, params)).one()
            if row.claimed is None:
                return Delivery(bool(row.delivered))
            return Delivery(
                True,
                rows.instance(_Composite(row.claimed)),
                tuple(rows.bookmark(_Composite(b)) for b in row.consumed or ()),
                tuple(rows.timer(_Composite(t)) for t in row.timers or ()),
            )

        return await self._write("deliver_event", deliver, autocommit=True)

    @cached_property
    def _fused_delivery(self) -> Select[Any]:
        return _fuse_delivery(self._sql)


_DELIVER_AND_CLAIM = text(
    "SELECT delivered, claimed, consumed, timers FROM "
    "flowkeeper_deliver_event(:p_bookmark_id, :p_event_key, :p_payload, :p_owner, :p_lease)"
).bindparams(
    bindparam("p_bookmark_id", type_=Text()),
    bindparam("p_event_key", type_=Text()),
    bindparam("p_payload", type_=JSONB(none_as_null=True)),
    bindparam("p_owner", type_=Text()),
    bindparam("p_lease", type_=Interval()),
)


_FIRE_AND_CLAIM = text(
    "SELECT fired, claimed, consumed, timers FROM "
    "flowkeeper_fire_timers(:p_limit, :p_owner, :p_lease, :p_ahead)"
).bindparams(
    bindparam("p_limit", type_=Integer()),
    bindparam("p_owner", type_=Text()),
    bindparam("p_lease", type_=Interval()),
    bindparam("p_ahead", type_=Interval()),
)


#: Statements whose results are rows of table types (composite values): preparing them
#: makes asyncpg read those types' definitions from the catalog, several round trips
#: that would otherwise fall on the first event delivery or timer of each connection.
_COMPOSITE_RESULTS = (
    "SELECT * FROM flowkeeper_deliver_event(NULL, NULL, NULL, NULL, NULL)",
    "SELECT * FROM flowkeeper_fire_timers(0, NULL, NULL, NULL)",
)

#: The fused instance insert and checkpoints, executed through :mod:`flowkeeper.store.statement_batches`
#: (asyncpg's statement cache): prepared up front too, with their array and JSON types.
_BATCHED_WRITES: tuple[FusedWrite, ...] = ("create", "checkpoint", "checkpoint_release_lease")


def _prepare(statements: list[str], dbapi_connection: Any, record: Any) -> None:
    """Pool ``connect`` and ``checkout`` hook: prepare ``statements`` on a connection
    (cached by asyncpg), once they all could be."""
    if record.info.get("prepared"):
        return

    async def prepare(connection: Any) -> bool:
        for statement in statements:
            try:
                await connection.fetchmany(statement, [])  # no arguments: prepared, not run
            except Exception:  # before the migrations the functions and tables do not exist
                return False
        return True

    record.info["prepared"] = dbapi_connection.run_async(prepare)


class _Composite:
    """A composite value (a row of a table type, as asyncpg decodes it) seen as a result
    row, so the row converters of :mod:`flowkeeper.store.rows` read it."""

    __slots__ = ("_mapping",)

    def __init__(self, record: Any) -> None:
        self._mapping = record


def _fuse_delivery(sql: Statements) -> Select[Any]:
    """``deliver_event`` after its instance-row lock, as one statement of data-modifying CTEs::

        WITH kept      AS (SELECT key FROM workflow_event WHERE key = :key FOR KEY SHARE),
             delivered AS (INSERT INTO workflow_event_delivery SELECT ... FROM kept, workflow_bookmark
                           ... ON CONFLICT DO NOTHING RETURNING ...),  -- insert_delivery's checks
             consumed  AS (UPDATE workflow_bookmark ... FROM delivered RETURNING instance_id),
             counted   AS (UPDATE workflow_event SET matched = matched + 1 FROM delivered ...),
             woken     AS (UPDATE workflow_instance SET status = 'running' FROM consumed
                           WHERE status = 'suspended' AND NOT <manual hold>)
        SELECT instance_id FROM consumed

    One round trip instead of four. Every part sees the snapshot taken after the lock
    (a new statement under READ COMMITTED), so nobody changed this instance's bookmarks
    since; only the manual-hold check must leave out the bookmark consumed here (a
    CTE does not see the other CTEs' writes). An event deleted meanwhile by retention
    cleanup is kept out by locking its row (``FOR KEY SHARE``), so the foreign key
    never fails.
    """
    b, e, d, i = workflow_bookmark.c, workflow_event.c, workflow_event_delivery.c, workflow_instance.c
    bookmark_id = bindparam("p_bookmark_id", type_=b.id.type)
    kept = (
        select(e.key)
        .where(e.key == bindparam("p_event_key", type_=e.key.type))
        .with_for_update(read=True, key_share=True)
        .cte("kept")
    )
    rows = (
        select(kept.c.key, b.instance_id, b.id, sql.now)
        .select_from(kept.join(workflow_bookmark, true()))  # one row each
        .where(b.id == bookmark_id, b.is_consumed == false())
    )
    delivered = (
        pg_insert(workflow_event_delivery)
        .from_select(["event_key", "instance_id", "bookmark_id", "delivered_on"], rows)
        .on_conflict_do_nothing()
        .returning(d.event_key, d.instance_id, d.bookmark_id)
        .cte("delivered")
    )
    consumed = (
        update(workflow_bookmark)
        .where(b.id == delivered.c.bookmark_id)
        .values(is_consumed=True, payload=bindparam("p_payload", type_=b.payload.type), consumed_on=sql.now)
        .returning(b.instance_id)
        .cte("consumed")
    )
    counted = (
        update(workflow_event)
        .where(e.key == delivered.c.event_key)
        .values(matched=e.matched + 1)
        .cte("counted")
    )
    woken = (
        update(workflow_instance)
        .where(
            i.id == consumed.c.instance_id,
            i.status == InstanceStatus.SUSPENDED.value,
            ~sql.manual_hold(excluding=bookmark_id),
        )
        .values(status=InstanceStatus.RUNNING.value, updated_on=sql.now)
        .cte("woken")
    )
    return select(consumed.c.instance_id).add_cte(counted).add_cte(woken)


def _fuse_log_insert(
    write: ReturningInsert[Any] | ReturningUpdate[Any], *, delete_gone: bool = False
) -> Select[Any]:
    """``WITH w AS (<write> RETURNING *), l AS (INSERT INTO log SELECT ... FROM w,
    unnest(arrays) WITH ORDINALITY) SELECT * FROM w``.

    One round trip instead of BEGIN, INSERT/UPDATE, INSERT, COMMIT. Atomic as a
    statement; when a checkpoint's guard matches no row, ``w`` is empty, so no log row
    is inserted either. Log rows are numbered from the written ``log_seq``.
    ``delete_gone``: also delete the instance's applied and cancelled bookmarks
    (``p_gone``), again only when the guard matched (the instance row, locked by the
    UPDATE, is what every other writer of its bookmarks locks first).
    """
    updated = write.cte("written")
    entries = (
        func.unnest(
            bindparam("p_log_reference", type_=ARRAY(Text())),
            bindparam("p_log_name", type_=ARRAY(Text())),
            bindparam("p_log_task_type", type_=ARRAY(Text())),
            bindparam("p_log_event", type_=ARRAY(Text())),
            bindparam("p_log_at", type_=ARRAY(UTCDateTime())),
            bindparam("p_log_detail", type_=ARRAY(JSONB(none_as_null=True))),
        )
        .table_valued("reference", "name", "task_type", "event", "at", "detail", with_ordinality="ord")
        .render_derived()
    )
    log = workflow_execution_log
    rows = select(
        updated.c.id,
        updated.c.log_seq - bindparam("p_log_count") + entries.c.ord,
        entries.c.reference,
        entries.c.name,
        entries.c.task_type,
        entries.c.event,
        entries.c.at,
        entries.c.detail,
    ).select_from(updated.join(entries, true()))
    columns = ["instance_id", "seq", "reference", "name", "task_type", "event", "at", "detail"]
    inserted = insert(log).from_select(columns, rows).cte("inserted")
    fused = select(updated).add_cte(inserted)
    if delete_gone:
        b = workflow_bookmark.c
        gone = (
            delete(workflow_bookmark)
            .where(
                b.instance_id.in_(select(updated.c.id).scalar_subquery()),
                b.id == func.any(bindparam("p_gone", type_=ARRAY(Text()))),
            )
            .cte("gone")
        )
        fused = fused.add_cte(gone)
    return fused
