"""The store's SQL, built once per store from SQLAlchemy Core.

:class:`Statements` holds every statement of the hot paths (claims, checkpoints,
bookmark consumption) as prebuilt objects with named bind parameters, so each execution
only binds values and hits SQLAlchemy's compiled-statement cache. The clock is a dialect
hook: PostgreSQL reads ``now()`` in the statement; SQLite (in-process, one machine)
binds Python's UTC now as ``p_now``.

Locking order, kept by every writer so PostgreSQL transactions never wait on each other
in a cycle: instance rows first, then their timers, then bookmarks (then kept events).
Every write to an instance's bookmarks or status holds that instance's row lock, which
is what makes the checks after it (consumed? delivered? manually held?) race-free. Among
instance rows, a child is locked before its parent: a finishing child's checkpoint holds
its own row and then resumes its parent's bookmark, and a cancellation walks a tree
deepest level first.

Manual suspension: an instance with an unconsumed ``manual`` bookmark stays
``suspended``; every statement that makes an instance runnable checks
:meth:`Statements.manual_hold`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from sqlalchemy import (
    BindParameter,
    Boolean,
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
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate
from sqlalchemy.sql.schema import Column

from flowkeeper.records import RUNNABLE_STATUSES, BookmarkKind, InstanceStatus
from flowkeeper.store.tables import (
    workflow_bookmark,
    workflow_event,
    workflow_event_delivery,
    workflow_execution_log,
    workflow_instance,
    workflow_outbox,
    workflow_timer,
)

_RUNNABLE = [s.value for s in RUNNABLE_STATUSES]
_SUSPENDED = InstanceStatus.SUSPENDED.value
_RUNNING = InstanceStatus.RUNNING.value
_CANCELLED = InstanceStatus.CANCELLED.value
_MANUAL = BookmarkKind.MANUAL.value

_i = workflow_instance.c
_b = workflow_bookmark.c
_t = workflow_timer.c
_e = workflow_event.c
_d = workflow_event_delivery.c


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
            # Only a free or expired lease: one of ours means a run of this process holds
            # it, and claiming again would fence that run (two runs, one wasted).
            .where(_i.id == param(_i.id), _i.status.in_(_RUNNABLE), self._lease_free(workflow_instance))
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

    @staticmethod
    def manual_hold(excluding: ColumnElement[Any] | None = None) -> ColumnElement[bool]:
        """The instance being updated has an unconsumed ``manual`` bookmark (other than
        ``excluding``, one the same statement consumes)."""
        hold = exists().where(_b.instance_id == _i.id, _b.is_consumed == false(), _b.kind == _MANUAL)
        return hold if excluding is None else hold.where(_b.id != excluding)

    @cached_property
    def wake_if_consumed(self) -> ReturningUpdate[Any]:
        """``suspended`` -> ``running`` when the instance has a consumed bookmark to apply
        (and is not manually held)."""
        return (
            update(workflow_instance)
            .where(
                _i.id == param(_i.id),
                _i.status == _SUSPENDED,
                exists().where(_b.instance_id == _i.id, _b.is_consumed == true()),
                ~self.manual_hold(),
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
    def make_runnable(self) -> ReturningUpdate[Any]:
        """``suspended`` -> ``running`` unless manually held; returns the ids it woke."""
        return (
            update(workflow_instance)
            .where(_i.id.in_(ids_param()), _i.status == _SUSPENDED, ~self.manual_hold())
            .values(status=_RUNNING, updated_on=self.now)
            .returning(_i.id)
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
    def lock_timers_due_soon(self) -> Select[Any]:
        # Not due yet (after p_due, up to p_soon) and of an instance nobody holds: the
        # caller claims and runs it, holding the run until the due time.
        return (
            select(_t.id)
            .join(workflow_instance, _i.id == _t.instance_id)
            .where(
                _t.due_at > bindparam("p_due", type_=_t.due_at.type),
                _t.due_at <= bindparam("p_soon", type_=_t.due_at.type),
                or_(
                    _i.lease_expires_at.is_(None),
                    _i.lease_expires_at <= bindparam("p_due", type_=_t.due_at.type),
                ),
            )
            .order_by(_t.due_at, _t.id)
            .limit(bindparam("p_limit"))
            .with_for_update(key_share=True, skip_locked=True, of=workflow_instance)
        )

    @cached_property
    def delete_fired_timers(self) -> ReturningDelete[Any]:
        return delete(workflow_timer).where(_t.id.in_(ids_param())).returning(*workflow_timer.c)

    # -- instance control --------------------------------------------------------------------

    @cached_property
    def lock_instance(self) -> Select[Any]:
        return select(workflow_instance).where(_i.id == param(_i.id)).with_for_update(key_share=True)

    @cached_property
    def lock_tree(self) -> Select[Any]:
        """An instance and all its descendants (through ``parent_id``), locked deepest
        level first (then by id): children before parents, the order a finishing child's
        checkpoint takes them in. Run again after locking: a child created by a write
        that committed while this waited is found (and locked) by the next run."""
        tree = (
            select(_i.id.label("id"), literal(0).label("depth"))
            .where(_i.id == param(_i.id))
            .cte("tree", recursive=True)
        )
        child = workflow_instance.alias("child")
        tree = tree.union(
            select(child.c.id, tree.c.depth + 1).where(
                child.c.parent_id == tree.c.id,
                # Only a corrupt parent_id cycle gets this deep; it must not loop for ever.
                tree.c.depth < _MAX_DEPTH,
            )
        )
        levels = select(tree.c.id, func.max(tree.c.depth).label("depth")).group_by(tree.c.id).subquery()
        return (
            select(workflow_instance)
            .join(levels, levels.c.id == _i.id)
            .order_by(levels.c.depth.desc(), _i.id)
            .with_for_update(key_share=True, of=workflow_instance)
        )

    def _control(self, *, fence: bool = True, **values: Any) -> ReturningUpdate[Any]:
        """An operator's change to instances: a new version and one log row (numbered
        ``log_seq``); with ``fence`` the lease is taken away and the fencing token bumped,
        so a worker still running the instance has its next checkpoint rejected."""
        changes: dict[str, Any] = {
            "row_version": _i.row_version + 1,
            "log_seq": _i.log_seq + 1,
            "updated_on": self.now,
        }
        if fence:
            changes |= {"lease_owner": None, "lease_expires_at": None, "fencing_token": _i.fencing_token + 1}
        return (
            update(workflow_instance)
            .where(_i.id.in_(ids_param()))
            .values(changes | values)
            .returning(*workflow_instance.c)
        )

    @cached_property
    def cancel_instances(self) -> ReturningUpdate[Any]:
        return self._control(status=_CANCELLED, completed_on=self.now)

    @cached_property
    def suspend_instance(self) -> ReturningUpdate[Any]:
        return self._control(status=_SUSPENDED)

    @cached_property
    def resume_instance(self) -> ReturningUpdate[Any]:
        # Running when it has work: it was runnable when suspended, or a bookmark of it
        # was consumed meanwhile (and no other manual bookmark holds it); else it goes
        # back to waiting. No lease is held while suspended, so none is fenced off.
        has_work = or_(
            bindparam("p_was_runnable", type_=Boolean()) == true(),
            and_(
                exists().where(_b.instance_id == _i.id, _b.is_consumed == true()),
                ~self.manual_hold(),
            ),
        )
        return self._control(fence=False, status=case((has_work, _RUNNING), else_=_SUSPENDED))

    @cached_property
    def retry_instance(self) -> ReturningUpdate[Any]:
        return self._control(status=_RUNNING, state=param(_i.state), error=None, completed_on=None)

    @cached_property
    def manual_bookmark(self) -> Select[Any]:
        return select(_b.is_consumed).where(_b.id == param(_b.id))

    @cached_property
    def delete_bookmark(self) -> Delete:
        return delete(workflow_bookmark).where(_b.id == param(_b.id))

    @cached_property
    def release_manual(self) -> ReturningDelete[Any]:
        return (
            delete(workflow_bookmark)
            .where(
                _b.id == param(_b.id),
                _b.instance_id == param(_b.instance_id),
                _b.kind == _MANUAL,
                _b.is_consumed == false(),
            )
            .returning(_b.filter)
        )

    @cached_property
    def delete_instances_bookmarks(self) -> Delete:
        return delete(workflow_bookmark).where(_b.instance_id.in_(ids_param()))

    @cached_property
    def delete_instances_timers(self) -> Delete:
        return delete(workflow_timer).where(_t.instance_id.in_(ids_param()))

    @cached_property
    def insert_control_log(self) -> Insert:
        """An instance-level log row (reference ``/``) stamped with the database clock."""
        log = workflow_execution_log.c
        return insert(workflow_execution_log).values(
            instance_id=param(log.instance_id),
            seq=param(log.seq),
            reference="/",
            name=param(log.name),
            task_type="workflow",
            event=param(log.event),
            at=self.now,
            detail=param(log.detail),
        )

    # -- events ------------------------------------------------------------------------------

    @cached_property
    def insert_delivery(self) -> ReturningInsert[Any]:
        """Record delivering an event to a bookmark's instance: nothing when the bookmark
        is consumed or gone, the event is not kept, or the event already reached that
        instance. Decides only under the instance's row lock (or SQLite's single writer)."""
        event = workflow_event.alias("event")
        delivered_before = exists().where(_d.event_key == event.c.key, _d.instance_id == _b.instance_id)
        rows = (
            select(event.c.key, _b.instance_id, _b.id, self.now)
            .select_from(event.join(workflow_bookmark, true()))  # one row each
            .where(
                event.c.key == bindparam("p_event_key", type_=_e.key.type),
                _b.id == bindparam("p_bookmark_id", type_=_b.id.type),
                _b.is_consumed == false(),
                ~delivered_before,
            )
        )
        return (
            insert(workflow_event_delivery)
            .from_select(["event_key", "instance_id", "bookmark_id", "delivered_on"], rows)
            .returning(_d.instance_id)
        )

    @cached_property
    def count_delivery(self) -> Update:
        return (
            update(workflow_event)
            .where(_e.key == bindparam("p_event_key", type_=_e.key.type))
            .values(matched=_e.matched + 1)
        )

    @cached_property
    def delete_events(self) -> Delete:
        # Oldest first, a bounded batch; concurrent cleaners skip each other's rows.
        doomed = (
            select(_e.key)
            .where(_e.received_on < bindparam("p_before", type_=_e.received_on.type))
            .order_by(_e.received_on)
            .limit(bindparam("p_limit"))
            .with_for_update(skip_locked=True)
        )
        return delete(workflow_event).where(_e.key.in_(doomed))


#: Deeper than any real nesting of child workflows; stops a corrupt ``parent_id`` cycle.
_MAX_DEPTH = 1000
