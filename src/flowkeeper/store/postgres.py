"""PostgreSQL adapter: asyncpg under SQLAlchemy's async engine.

Leases, due timers and ``updated_on`` use the database clock (``now()``), so replicas
with skewed clocks still agree. Row locks (``FOR UPDATE SKIP LOCKED``) let claimers and
timer services run side by side without ever taking the same row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Executable,
    Insert,
    Interval,
    Select,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import ReturningUpdate

from flowkeeper.store.base import SqlStore
from flowkeeper.store.tables import UTCDateTime, workflow_execution_log


class PostgresStore(SqlStore):
    """The :class:`~flowkeeper.store.port.Store` on PostgreSQL."""

    locks_rows: ClassVar[bool] = True

    def _create_engines(self) -> tuple[AsyncEngine, AsyncEngine, AsyncEngine]:
        engine = create_async_engine(
            self._db_url.sqlalchemy_url,
            pool_size=max(self.min_pool_size, 1),
            max_overflow=self.max_pool_size - max(self.min_pool_size, 1),
            pool_timeout=self.connect_timeout,
            echo=self.echo,
            connect_args={
                "timeout": self.connect_timeout,
                "command_timeout": self.command_timeout,
                "server_settings": {"application_name": "flowkeeper"},
            },
        )
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

    async def _read_clock(self, conn: AsyncConnection) -> datetime:
        value = (await conn.exec_driver_sql("SELECT now()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def _insert_or_ignore(self, table: Table) -> Insert:
        return pg_insert(table).on_conflict_do_nothing()

    def _fused_checkpoint_sql(self, release_lease: bool) -> Executable | None:
        return self._fused_checkpoints[release_lease]

    @cached_property
    def _fused_checkpoints(self) -> dict[bool, Select[Any]]:
        return {
            False: _fuse_log_insert(self._sql.checkpoint_keep_lease),
            True: _fuse_log_insert(self._sql.checkpoint_release_lease),
        }


def _fuse_log_insert(guarded_update: ReturningUpdate[Any]) -> Select[Any]:
    """``WITH u AS (<guarded UPDATE> RETURNING *), l AS (INSERT INTO log SELECT ... FROM u,
    unnest(arrays) WITH ORDINALITY) SELECT * FROM u``.

    One round trip instead of BEGIN, UPDATE, INSERT, COMMIT. Atomic as a statement; when
    the guard matches no row, ``u`` is empty, so no log row is inserted either. Log rows
    are numbered from the updated ``log_seq``.
    """
    updated = guarded_update.cte("updated")
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
    return select(updated).add_cte(inserted)
