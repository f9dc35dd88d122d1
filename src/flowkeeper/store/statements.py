"""The store's SQL, built once per store from SQLAlchemy Core.

:class:`Statements` holds every statement of the hot paths (claims, checkpoints,
bookmark consumption) as prebuilt objects with named bind parameters, so each execution
only binds values and hits SQLAlchemy's compiled-statement cache. The clock is a dialect
hook: PostgreSQL reads ``now()`` in the statement; SQLite (in-process, one machine)
binds Python's UTC now as ``p_now``.

Locking order, kept by every writer so PostgreSQL transactions never wait on each other
in a cycle: instance rows first, then their timers, then bookmarks.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Delete,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate
from sqlalchemy.sql.schema import Column

from flowkeeper.records import RUNNABLE_STATUSES, InstanceStatus
from flowkeeper.store.tables import (
    workflow_bookmark,
    workflow_execution_log,
    workflow_instance,
    workflow_outbox,
    workflow_timer,
)

_RUNNABLE = [s.value for s in RUNNABLE_STATUSES]
_SUSPENDED = InstanceStatus.SUSPENDED.value
_RUNNING = InstanceStatus.RUNNING.value

_i = workflow_instance.c
_b = workflow_bookmark.c
_t = workflow_timer.c


def param(column: Column[Any], name: str | None = None) -> BindParameter[Any]:
    """A bind parameter typed like ``column``, named ``p_<column>`` unless told otherwise."""
    return bindparam(name or f"p_{column.name}", type_=column.type)


def ids_param(name: str = "p_ids") -> BindParameter[Any]:
    """An expanding list parameter for ``IN``."""
    return bindparam(name, expanding=True)


class Statements:
    """Prebuilt statements for one dialect's clock expressions."""

    def __init__(self, now: ColumnElement[Any], lease_until: ColumnElement[Any]) -> None:
        self.now = now
        self.lease_until = lease_until

    # -- inserts ---------------------------------------------------------------------------

    def _created(self, column: Column[Any]) -> ColumnElement[Any]:
        # Records usually leave timestamps to the store (the database clock); a given
        # value (imports, tests) is kept.
        return func.coalesce(param(column, "p_created_on"), self.now)

    @cached_property
    def insert_instance(self) -> Insert:
        values: dict[str, Any] = {
            c.name: param(c)
            for c in workflow_instance.columns
            if c.name not in ("row_version", "created_on", "updated_on")
        }
        values["row_version"] = 1
        values["created_on"] = self._created(_i.created_on)
        values["updated_on"] = self._created(_i.created_on)
        return insert(workflow_instance).values(values)

    @cached_property
    def create_instance(self) -> ReturningInsert[Any]:
        return self.insert_instance.returning(*workflow_instance.c)

    @cached_property
    def insert_bookmark(self) -> Insert:
        values: dict[str, Any] = {c.name: param(c) for c in workflow_bookmark.columns}
        values["created_on"] = self._created(_b.created_on)
        # A bookmark may be created already consumed (its event arrived first).
        values["consumed_on"] = func.coalesce(
            param(_b.consumed_on), case((param(_b.is_consumed) == true(), self.now), else_=None)
        )
        return insert(workflow_bookmark).values(values)

    @cached_property
    def insert_timer(self) -> Insert:
        values: dict[str, Any] = {c.name: param(c) for c in workflow_timer.columns}
        values["created_on"] = self._created(_t.created_on)
        return insert(workflow_timer).values(values)

    @cached_property
    def insert_outbox(self) -> Insert:
        c = workflow_outbox.c
        values: dict[str, Any] = {col.name: param(col) for col in workflow_outbox.columns}
        values["created_on"] = self._created(c.created_on)
        # Deliver as soon as possible unless the writer asked for later.
        values["next_attempt_at"] = func.coalesce(param(c.next_attempt_at), self.now)
        return insert(workflow_outbox).values(values)

    @cached_property
    def insert_log(self) -> Insert:
        values = {c.name: param(c) for c in workflow_execution_log.columns if c.name != "id"}
        return insert(workflow_execution_log).values(values)

    # -- claims and leases -------------------------------------------------------------------

    def _lease_free(self, table: Any) -> ColumnElement[bool]:
        return or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at <= self.now)

    def _claim_values(self) -> dict[str, Any]:
        return {
            "lease_owner": param(_i.lease_owner),
            "lease_expires_at": self.lease_until,
            "fencing_token": _i.fencing_token + 1,
        }

    @cached_property
    def claim_batch(self) -> ReturningUpdate[Any]:
        candidate = workflow_instance.alias("candidate")
        # SKIP LOCKED: concurrent claimers pass over each other's rows instead of
        # queueing behind them, so no two ever return the same instance.
        picked = (
            select(candidate.c.id)
            .where(candidate.c.status.in_(_RUNNABLE), self._lease_free(candidate))
            .limit(bindparam("p_limit"))
            .with_for_update(key_share=True, skip_locked=True)
        )
        return (
            update(workflow_instance)
            .where(_i.id.in_(picked))
            .values(self._claim_values())
            .returning(*workflow_instance.c)
        )

    @cached_property
    def claim_one(self) -> ReturningUpdate[Any]:
        return (
            update(workflow_instance)
            .where(
                _i.id == param(_i.id),
                _i.status.in_(_RUNNABLE),
                or_(self._lease_free(workflow_instance), _i.lease_owner == param(_i.lease_owner)),
            )
            .values(self._claim_values())
            .returning(*workflow_instance.c)
        )

    def _lease_held(self) -> ColumnElement[bool]:
        return and_(
            _i.id == param(_i.id),
            _i.lease_owner == param(_i.lease_owner),
            _i.fencing_token == param(_i.fencing_token),
        )

    @cached_property
    def renew(self) -> Update:
        return update(workflow_instance).where(self._lease_held()).values(lease_expires_at=self.lease_until)

    @cached_property
    def release(self) -> Update:
        return (
            update(workflow_instance)
            .where(self._lease_held())
            .values(lease_owner=None, lease_expires_at=None)
        )

    # -- checkpoint ----------------------------------------------------------------------------

    def _checkpoint(self, release_lease: bool) -> ReturningUpdate[Any]:
        values: dict[str, Any] = {
            "status": param(_i.status),
            "state": param(_i.state),
            "output": param(_i.output),
            "error": param(_i.error),
            "current_activity_id": param(_i.current_activity_id),
            # The first start time stays; later checkpoints may leave it unset.
            "started_on": func.coalesce(param(_i.started_on), _i.started_on),
            "completed_on": param(_i.completed_on),
            "row_version": _i.row_version + 1,
            "log_seq": _i.log_seq + bindparam("p_log_count"),
            "updated_on": self.now,
        }
        if release_lease:
            values.update(lease_owner=None, lease_expires_at=None)
        # The guard: only the holder of the current lease, writing on top of the
        # version it read, may write. Zero rows means a stale or concurrent writer.
        return (
            update(workflow_instance)
            .where(
                _i.id == param(_i.id),
                _i.row_version == bindparam("p_expected_row_version"),
                _i.fencing_token == param(_i.fencing_token),
                _i.lease_owner == param(_i.lease_owner),
            )
            .values(values)
            .returning(*workflow_instance.c)
        )

    @cached_property
    def checkpoint_keep_lease(self) -> ReturningUpdate[Any]:
        return self._checkpoint(release_lease=False)

    @cached_property
    def checkpoint_release_lease(self) -> ReturningUpdate[Any]:
        return self._checkpoint(release_lease=True)

    @cached_property
    def wake_if_consumed(self) -> ReturningUpdate[Any]:
        """``suspended`` -> ``running`` when the instance has a consumed bookmark to apply."""
        return (
            update(workflow_instance)
            .where(
                _i.id == param(_i.id),
                _i.status == _SUSPENDED,
                exists().where(_b.instance_id == _i.id, _b.is_consumed == true()),
            )
            .values(status=_RUNNING)
            .returning(_i.id)
        )

    @cached_property
    def delete_bookmarks(self) -> Delete:
        return delete(workflow_bookmark).where(
            _b.instance_id == param(_b.instance_id), _b.id.in_(ids_param())
        )

    @cached_property
    def delete_timers(self) -> Delete:
        return delete(workflow_timer).where(_t.instance_id == param(_t.instance_id), _t.id.in_(ids_param()))

    # -- consuming bookmarks ---------------------------------------------------------------

    @cached_property
    def lock_bookmark_instances(self) -> Select[Any]:
        owners = select(_b.instance_id).where(_b.id.in_(ids_param()), _b.is_consumed == false())
        return select(_i.id).where(_i.id.in_(owners)).order_by(_i.id).with_for_update(key_share=True)

    @cached_property
    def lock_unconsumed_bookmarks(self) -> Select[Any]:
        return (
            select(_b.id, _b.instance_id)
            .where(_b.id.in_(ids_param()), _b.is_consumed == false())
            .order_by(_b.id)
            .with_for_update()
        )

    @cached_property
    def consume_bookmark(self) -> Update:
        return (
            update(workflow_bookmark)
            .where(_b.id == param(_b.id), _b.is_consumed == false())
            .values(is_consumed=True, payload=param(_b.payload), consumed_on=self.now)
        )

    @cached_property
    def make_runnable(self) -> Update:
        return (
            update(workflow_instance)
            .where(_i.id.in_(ids_param()), _i.status == _SUSPENDED)
            .values(status=_RUNNING, updated_on=self.now)
        )

    # -- timers ------------------------------------------------------------------------------

    @cached_property
    def lock_due_timers(self) -> Select[Any]:
        # Lock the owning instances (SKIP LOCKED: one being checkpointed right now is
        # left for the next round), which also keeps two timer services apart.
        return (
            select(_t.id)
            .join(workflow_instance, _i.id == _t.instance_id)
            .where(_t.due_at <= bindparam("p_due", type_=_t.due_at.type))
            .order_by(_t.due_at, _t.id)
            .limit(bindparam("p_limit"))
            .with_for_update(key_share=True, skip_locked=True, of=workflow_instance)
        )

    @cached_property
    def delete_fired_timers(self) -> ReturningDelete[Any]:
        return delete(workflow_timer).where(_t.id.in_(ids_param())).returning(*workflow_timer.c)
