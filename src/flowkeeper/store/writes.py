"""The multi-statement writes: a checkpoint's rows and consuming bookmarks.

Shared by ``checkpoint``, ``create_instance`` (a first checkpoint), ``resume_bookmark``,
``fire_due_timers`` and ``cancel_instance``; each function runs inside the caller's
transaction. Locking order (PostgreSQL): instance rows first, then timers, then
bookmarks, as everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from flowkeeper.errors import ConcurrencyConflict
from flowkeeper.records import JSON, Checkpoint, InstanceStatus, LogEntry
from flowkeeper.store import rows
from flowkeeper.store.statements import Statements
from flowkeeper.store.tables import workflow_instance

_i = workflow_instance.c


async def conflict(conn: AsyncConnection, cp: Checkpoint) -> ConcurrencyConflict:
    """The error for a checkpoint whose guard matched no row, saying what was found instead."""
    query = select(_i.row_version, _i.fencing_token, _i.lease_owner).where(_i.id == cp.instance_id)
    found = (await conn.execute(query)).first()
    if found is None:
        return ConcurrencyConflict(f"checkpoint of instance {cp.instance_id}: the instance no longer exists")
    return ConcurrencyConflict(
        f"checkpoint of instance {cp.instance_id} rejected (stale writer): expected row_version "
        f"{cp.expected_row_version}, fencing token {cp.fencing_token}, owner {cp.lease_owner!r}; "
        f"found {found.row_version}, {found.fencing_token}, {found.lease_owner!r}"
    )


async def write_checkpoint_rows(
    conn: AsyncConnection,
    sql: Statements,
    cp: Checkpoint,
    instance_id: str,
    status: InstanceStatus,
    first_seq: int,
    clock: dict[str, Any],
    *,
    locks_rows: bool,
) -> InstanceStatus:
    """Everything of a checkpoint but the instance row; returns the instance's final status.

    Empty collections cost no statement; multi-row inserts are one executemany each.
    """
    if cp.new_instances:
        await insert_many(
            conn, sql.insert_instance, (rows.instance_params(r, 0) for r in cp.new_instances), clock
        )
    # Deletes before inserts, so a bookmark may be replaced by one with the same id.
    gone = [*cp.applied_bookmarks, *cp.cancelled_bookmarks]
    if gone:
        await conn.execute(sql.delete_bookmarks, {"p_instance_id": instance_id, "p_ids": gone})
    if cp.cancelled_timers:
        await conn.execute(
            sql.delete_timers, {"p_instance_id": instance_id, "p_ids": list(cp.cancelled_timers)}
        )
    if cp.new_bookmarks:
        await insert_many(conn, sql.insert_bookmark, map(rows.bookmark_params, cp.new_bookmarks), clock)
    if cp.new_timers:
        await insert_many(conn, sql.insert_timer, map(rows.timer_params, cp.new_timers), clock)
    if cp.outbox:
        await insert_many(conn, sql.insert_outbox, map(rows.outbox_params, cp.outbox), clock)
    if cp.log:
        log = (rows.log_params(e, instance_id, first_seq + n) for n, e in enumerate(cp.log))
        await insert_many(conn, sql.insert_log, log, {})
    woken: frozenset[str] = frozenset()
    if cp.resume_bookmarks:
        consumed = await consume(
            conn, sql, [(r.bookmark_id, r.payload) for r in cp.resume_bookmarks], clock, locks_rows=locks_rows
        )
        woken = consumed.woken
    if status is InstanceStatus.SUSPENDED:
        if instance_id in woken:
            return InstanceStatus.RUNNING
        # A consumed bookmark means work to do: an event that arrived while we ran,
        # or a bookmark created consumed (unless a manual bookmark holds the instance).
        # Run as its own statement, after the writes above and (on PostgreSQL) after
        # any resumer holding our row has committed, so it sees that resumer's bookmark.
        if (await conn.execute(sql.wake_if_consumed, {"p_id": instance_id})).first() is not None:
            return InstanceStatus.RUNNING
    return status


async def insert_many(
    conn: AsyncConnection, stmt: Insert, params: Iterable[dict[str, Any]], clock: dict[str, Any]
) -> None:
    """One INSERT for one row, one executemany (a single pipelined round trip) for more."""
    batch = [p | clock for p in params] if clock else list(params)
    await conn.execute(stmt, batch[0] if len(batch) == 1 else batch)


@dataclass(frozen=True, slots=True)
class Consumed:
    """What :func:`consume` did: whose bookmarks it consumed, which instances it woke."""

    owners: frozenset[str] = frozenset()
    #: ``suspended`` -> ``running``: not those already runnable, finished or manually held.
    woken: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        """Whether anything was consumed."""
        return bool(self.owners)


async def consume(
    conn: AsyncConnection,
    sql: Statements,
    items: Sequence[tuple[str, JSON]],
    clock: dict[str, Any],
    *,
    locks_rows: bool,
) -> Consumed:
    """Consume the not-yet-consumed bookmarks among ``items``; make their instances runnable.

    Exactly once: the bookmark rows are locked (on SQLite, writers are serialised)
    before the ``is_consumed = false`` check that decides. A manually suspended
    instance (an unconsumed ``manual`` bookmark) stays suspended. At most four
    statements, whatever the count.
    """
    ids = sorted({bookmark_id for bookmark_id, _ in items})
    if locks_rows:
        # Instance rows before bookmark rows: the order checkpoints lock in.
        await conn.execute(sql.lock_bookmark_instances, {"p_ids": ids})
    free = {r.id: r.instance_id for r in await conn.execute(sql.lock_unconsumed_bookmarks, {"p_ids": ids})}
    if not free:
        return Consumed()
    batch: dict[str, dict[str, Any]] = {}
    for bookmark_id, payload in items:
        if bookmark_id in free and bookmark_id not in batch:  # the first payload wins
            batch[bookmark_id] = {"p_id": bookmark_id, "p_payload": payload} | clock
    updates = list(batch.values())
    await conn.execute(sql.consume_bookmark, updates[0] if len(updates) == 1 else updates)
    owners = frozenset(free.values())
    woken = await conn.execute(sql.make_runnable, {"p_ids": sorted(owners)} | clock)
    return Consumed(owners, frozenset(woken.scalars()))


def only_log(cp: Checkpoint, status: InstanceStatus, *, bookmark_deletes: bool = False) -> bool:
    """True when a checkpoint writes nothing but the instance row (left in ``status``) and
    log rows (and, with ``bookmark_deletes``, deletes applied or cancelled bookmarks).

    A ``suspended`` instance is excluded: it needs the wake-up check after its write.
    """
    deletes = not bookmark_deletes and (cp.applied_bookmarks or cp.cancelled_bookmarks)
    return InstanceStatus(status) is not InstanceStatus.SUSPENDED and not (
        cp.new_instances
        or cp.new_bookmarks
        or deletes
        or cp.new_timers
        or cp.cancelled_timers
        or cp.outbox
        or cp.resume_bookmarks
    )


def check_log_owner(log: Sequence[LogEntry], instance_id: str) -> None:
    """``ValueError`` unless every entry belongs to ``instance_id``."""
    # Sequence numbers are per instance and come from that instance's row: a log entry
    # of another instance cannot be numbered here.
    for entry in log:
        if entry.instance_id != instance_id:
            raise ValueError(
                f"log entry of instance {entry.instance_id} in a write for instance {instance_id}"
            )
