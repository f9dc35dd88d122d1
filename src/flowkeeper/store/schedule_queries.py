"""Workflow schedules: one row per scheduled ``namespace/name``, fired exactly once per tick.

Every change to a schedule row is conditional on the ``revision`` it was computed from
(``UPDATE … WHERE revision = :read``), and each write bumps it. Replicas that read the
same due schedule race on that update: the one whose update hits creates the instance,
in the same transaction; the others' updates match nothing and they start nothing. So
a tick starts one instance whatever the number of schedulers, and a crash between the
update and the insert cannot happen (both commit or neither does).

The latest deployed version (SemVer order, as ``get_definition``) owns the schedule:
``put_schedule`` for an older version changes nothing, for the latest it replaces the
row (or removes it when that version has no ``schedule``).
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Select, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from flowkeeper.records import InstanceRecord, InstanceStatus
from flowkeeper.schedule_records import ScheduleKind, ScheduleRecord
from flowkeeper.store import rows
from flowkeeper.store.connector import Connector
from flowkeeper.store.statements import Statements, param
from flowkeeper.store.tables import workflow_definition, workflow_instance, workflow_schedule

_s, _i, _d = workflow_schedule.c, workflow_instance.c, workflow_definition.c

_TERMINAL = [s.value for s in InstanceStatus if s.is_terminal]


def _key(namespace: str, name: str) -> dict[str, str]:
    return {"p_namespace": namespace, "p_name": name}


class ScheduleQueries(Connector):
    """Schedules of deployed workflows (see the module docstring)."""

    _sql: Statements

    # -- statements ----------------------------------------------------------------------------

    def _this_schedule(self) -> Any:
        return (_s.namespace == param(_s.namespace)) & (_s.name == param(_s.name))

    @cached_property
    def _lock_schedule_sql(self) -> Select[Any]:
        return select(workflow_schedule).where(self._this_schedule()).with_for_update()

    @cached_property
    def _insert_schedule_sql(self) -> ReturningInsert[Any]:
        values: dict[str, Any] = {c.name: param(c) for c in workflow_schedule.columns}
        values |= {"revision": 1, "updated_on": self._sql.now}
        return self._insert_or_ignore(workflow_schedule).values(values).returning(*workflow_schedule.c)

    @cached_property
    def _replace_schedule_sql(self) -> ReturningUpdate[Any]:
        values: dict[str, Any] = {
            c.name: param(c) for c in workflow_schedule.columns if c.name not in ("namespace", "name")
        }
        values |= {"revision": _s.revision + 1, "updated_on": self._sql.now}
        return (
            update(workflow_schedule)
            .where(self._this_schedule())
            .values(values)
            .returning(*workflow_schedule.c)
        )

    @cached_property
    def _advance_schedule_sql(self) -> ReturningUpdate[Any]:
        return (
            update(workflow_schedule)
            .where(self._this_schedule(), _s.revision == param(_s.revision))
            .values(
                next_due=param(_s.next_due),
                pending=param(_s.pending),
                last_instance_id=func.coalesce(param(_s.last_instance_id), _s.last_instance_id),
                revision=_s.revision + 1,
                updated_on=self._sql.now,
            )
            .returning(_s.revision)
        )

    def _params(self, record: ScheduleRecord) -> dict[str, Any]:
        return {
            "p_namespace": record.namespace,
            "p_name": record.name,
            "p_version": record.version,
            "p_kind": ScheduleKind(record.kind).value,
            "p_spec": record.spec,
            "p_next_due": record.next_due,
            "p_last_instance_id": record.last_instance_id,
            "p_pending": record.pending,
            "p_revision": record.revision,
            "p_updated_on": record.updated_on,
        }

    # -- deployment ------------------------------------------------------------------------

    async def put_schedule(
        self, namespace: str, name: str, version: str, schedule: ScheduleRecord | None
    ) -> ScheduleRecord | None:
        """Make ``schedule`` (None: no schedule) the one of ``namespace/name`` if ``version``
        is its latest deployed version; returns the schedule stored afterwards.

        When the stored schedule has the same kind and ``spec``, only its version moves
        on: its due time, last instance and pending events are kept (a redeploy does not
        postpone a tick or forget half-collected events).
        """
        if schedule is not None and (schedule.namespace, schedule.name, schedule.version) != (
            namespace,
            name,
            version,
        ):
            raise ValueError("the schedule belongs to another definition version")
        key = _key(namespace, name)
        clock = self._clock()

        async def put(conn: AsyncConnection) -> ScheduleRecord | None:
            # The row lock first, then the versions: a deploy of another version that
            # committed before we got the lock is seen, so the latest one always wins.
            row = (await conn.execute(self._lock_schedule_sql, key)).first()
            current = None if row is None else rows.schedule(row)
            if not await self._is_latest(conn, namespace, name, version):
                return current
            if schedule is None:
                if current is not None:
                    await conn.execute(workflow_schedule.delete().where(self._this_schedule()), key)
                return None
            if current is None:
                row = (await conn.execute(self._insert_schedule_sql, self._params(schedule) | clock)).first()
                if row is not None:
                    return rows.schedule(row)
                # Another deploy inserted the row after our look: take its lock, look again.
                current = rows.schedule((await conn.execute(self._lock_schedule_sql, key)).one())
                if not await self._is_latest(conn, namespace, name, version):
                    return current
            if current.version == version and current.kind == schedule.kind and current.spec == schedule.spec:
                return current  # the same deployment again
            kept = schedule
            if current.kind == schedule.kind and current.spec == schedule.spec:
                kept = ScheduleRecord(
                    namespace,
                    name,
                    version,
                    schedule.kind,
                    schedule.spec,
                    next_due=current.next_due,
                    last_instance_id=current.last_instance_id,
                    pending=current.pending,
                )
            row = (await conn.execute(self._replace_schedule_sql, self._params(kept) | clock)).one()
            return rows.schedule(row)

        return await self._write("put_schedule", put)

    @staticmethod
    async def _is_latest(conn: AsyncConnection, namespace: str, name: str, version: str) -> bool:
        query = select(_d.version).where(_d.namespace == namespace, _d.name == name)
        versions = list((await conn.execute(query)).scalars())
        return bool(versions) and max(versions, key=rows.version_key) == version

    # -- reads -----------------------------------------------------------------------------

    async def get_schedule(self, namespace: str, name: str) -> ScheduleRecord | None:
        """The schedule of ``namespace/name``, if any."""
        query = select(workflow_schedule).where(_s.namespace == namespace, _s.name == name)
        async with self._reading("get_schedule") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else rows.schedule(row)

    async def list_schedules(self, kind: ScheduleKind | None = None) -> list[ScheduleRecord]:
        """Every schedule (of one kind), by namespace and name."""
        query = select(workflow_schedule)
        if kind is not None:
            query = query.where(_s.kind == ScheduleKind(kind).value)
        async with self._reading("list_schedules") as conn:
            return [rows.schedule(r) for r in await conn.execute(query.order_by(_s.namespace, _s.name))]

    async def due_schedules(self, limit: int, now: datetime | None = None) -> list[ScheduleRecord]:
        """Schedules whose ``next_due`` is at or before ``now`` (default: the database
        clock), earliest first."""
        if limit < 1:
            return []
        async with self._reading("due_schedules") as conn:
            moment = now if now is not None else await self._read_clock(conn)
            query = (
                select(workflow_schedule)
                .where(_s.next_due <= bindparam("p_due", moment, type_=_s.next_due.type))
                .order_by(_s.next_due, _s.namespace, _s.name)
                .limit(limit)
            )
            return [rows.schedule(r) for r in await conn.execute(query)]

    async def next_schedule_due(self) -> datetime | None:
        """The earliest ``next_due`` of any schedule."""
        async with self._reading("next_schedule_due") as conn:
            due: datetime | None = (await conn.execute(select(func.min(_s.next_due)))).scalar()
        return due

    async def finished_after_schedules(self, limit: int) -> list[tuple[ScheduleRecord, datetime | None]]:
        """``after`` schedules waiting for their last run, which has ended: each with that
        run's ``completed_on`` (None when the instance is gone, e.g. cleaned up)."""
        if limit < 1:
            return []
        query = (
            select(workflow_schedule, _i.completed_on.label("last_completed_on"))
            .outerjoin(workflow_instance, _i.id == _s.last_instance_id)
            .where(
                _s.kind == ScheduleKind.AFTER.value,
                _s.next_due.is_(None),
                or_(_i.id.is_(None), _i.status.in_(_TERMINAL)),
            )
            .order_by(_s.namespace, _s.name)
            .limit(limit)
        )
        async with self._reading("finished_after_schedules") as conn:
            return [(rows.schedule(r), r._mapping["last_completed_on"]) for r in await conn.execute(query)]

    # -- firing ----------------------------------------------------------------------------

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_due: datetime | None,
        instance: InstanceRecord | None = None,
        *,
        pending: Any = None,
    ) -> bool:
        """Move a schedule on from the state it was read in, and start ``instance``, atomically.

        One transaction: the row gets ``next_due``, ``pending`` (and ``last_instance_id``
        = ``instance.id``) only if its ``revision`` is still ``schedule.revision``; then,
        and only then, ``instance`` is inserted (as ``create_instance`` would, without a
        checkpoint). False (nothing written) when another writer moved the schedule on
        first. ``instance`` None only moves the schedule (arming an ``after`` schedule,
        collecting an event of ``all``).
        """
        params = self._params(schedule) | {
            "p_next_due": next_due,
            "p_pending": pending,
            "p_last_instance_id": None if instance is None else instance.id,
        }
        clock = self._clock()

        async def fire(conn: AsyncConnection) -> bool:
            if (await conn.execute(self._advance_schedule_sql, params | clock)).first() is None:
                return False
            if instance is not None:
                await conn.execute(
                    self._sql.create_instance, rows.instance_params(instance, log_seq=0) | clock
                )
            return True

        return await self._write("fire_schedule", fire)
