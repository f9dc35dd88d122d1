"""Instances started by a definition's DSL ``schedule``: its plan, the deploy hook, event starts.

A definition's ``schedule`` sets exactly one of:

- ``every`` (a DSL duration): a run every period, whether or not earlier runs ended;
  the first one period after the deployment;
- ``cron`` (five fields, UTC, see :mod:`flowkeeper.definitions.cron`): a run at each
  matching minute;
- ``after`` (a DSL duration): a run that long after the previous scheduled run ended
  (completed, failed or cancelled); the first one right after the deployment;
- ``on`` (an event consumption strategy): for ``one`` and ``any``, a run per matching
  event; for ``all``, a run per complete set (one event per filter, with equal
  correlation values), the sets being collected across events in the schedule row.
  Per the DSL, the run's input is the array of the events that started it.

The latest deployed version of a ``namespace/name`` owns its schedule (see
:meth:`~flowkeeper.store.port.Store.put_schedule`); :func:`put_definition` stores a
definition and its schedule. Time-driven runs are started by the scheduler service
(:mod:`flowkeeper.services.schedules`); event-driven ones by :func:`start_for_event`,
which ``publish`` calls for every incoming event.

Exactly once: a tick moves the schedule row on and inserts the instance in one
transaction that only one replica can win; an event's run carries an idempotency key
made of the workflow and the event's key, so the same event, published twice or by two
replicas, starts one instance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowkeeper.definitions.cron import CronError, CronExpression, parse_cron
from flowkeeper.engine.durations import parse_duration
from flowkeeper.engine.events import correlation_values, filter_matches
from flowkeeper.errors import (
    DefinitionError,
    DefinitionNotFound,
    InputValidationError,
    InstanceConflict,
    Problem,
    WorkflowError,
)
from flowkeeper.records import DefinitionRecord, InstanceRecord, InstanceStatus
from flowkeeper.runtime.ids import new_instance_id
from flowkeeper.schedule_records import ScheduleKind, ScheduleRecord

if TYPE_CHECKING:
    from flowkeeper.runtime.engine import Engine
    from flowkeeper.store.port import Store

JSON = Any
log = logging.getLogger("flowkeeper.scheduler")

#: Idempotency keys of scheduled instances start with this (how a scheduled run is recognised).
KEY_PREFIX = "schedule:"

#: Incomplete event sets kept per ``on: all`` schedule; past it the oldest set is dropped.
MAX_PENDING_SETS = 100

#: Attempts at collecting one event into an ``all`` set when other writers keep winning.
_COLLECT_ATTEMPTS = 20

_KINDS = tuple(ScheduleKind)


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    """A ``schedule`` object, checked and parsed."""

    kind: ScheduleKind
    spec: dict[str, JSON]
    #: ``every`` and ``after``: the duration.
    period: timedelta | None = None
    cron: CronExpression | None = None
    #: ``on``: ``one``/``any``/``all`` and the event filters.
    mode: str | None = None
    filters: tuple[dict[str, JSON], ...] = ()

    def first_due(self, now: datetime) -> datetime | None:
        """When a freshly deployed schedule first runs (None: on events only)."""
        if self.kind is ScheduleKind.EVERY:
            assert self.period is not None
            return now + self.period
        if self.kind is ScheduleKind.CRON:
            assert self.cron is not None
            return self.cron.next_after(now)
        if self.kind is ScheduleKind.AFTER:
            return now  # no previous run to wait for
        return None

    def next_due(self, due: datetime, now: datetime) -> datetime | None:
        """The tick after the one due at ``due``, fired at ``now``: the first one after
        ``now`` (ticks missed while nothing ran are not made up, they collapse into
        the run just fired). None for ``after``: it waits for the run to end."""
        if self.kind is ScheduleKind.EVERY:
            assert self.period is not None
            missed = max((now - due) // self.period, 0)
            return due + (missed + 1) * self.period
        if self.kind is ScheduleKind.CRON:
            assert self.cron is not None
            return self.cron.next_after(max(due, now))
        return None

    def matches(self, event: dict[str, JSON]) -> list[int]:
        """The indexes of the ``on`` filters an event satisfies (``any: []``: every event)."""
        if self.mode == "any" and not self.filters:
            return [0]
        return [n for n, spec in enumerate(self.filters) if filter_matches(spec, event)]


def plan(document: dict[str, JSON]) -> SchedulePlan | None:
    """The plan of a definition's ``schedule`` (None without one); ``DefinitionError``
    when it sets more than one property or one does not parse."""
    spec = document.get("schedule")
    if not isinstance(spec, dict) or not spec:
        return None
    present = [k for k in _KINDS if k.value in spec]
    if len(present) != 1:
        raise DefinitionError(
            [
                Problem(
                    "/schedule",
                    "set exactly one of every, cron, after and on (their combination has no meaning)",
                )
            ]
        )
    kind = present[0]
    value = spec[kind.value]
    pointer = f"/schedule/{kind.value}"
    if kind in (ScheduleKind.EVERY, ScheduleKind.AFTER):
        try:
            period = parse_duration(value)
        except WorkflowError as exc:
            raise DefinitionError([Problem(pointer, exc.detail or exc.message)]) from exc
        if kind is ScheduleKind.EVERY and period <= timedelta(0):
            raise DefinitionError([Problem(pointer, "the period must be longer than zero")])
        return SchedulePlan(kind, spec, period=period)
    if kind is ScheduleKind.CRON:
        try:
            return SchedulePlan(kind, spec, cron=parse_cron(value))
        except CronError as exc:
            raise DefinitionError([Problem(pointer, str(exc))]) from exc
    if not isinstance(value, dict):
        raise DefinitionError(
            [Problem(pointer, "an event consumption strategy (one, any or all) is required")]
        )
    if "all" in value:
        return SchedulePlan(kind, spec, mode="all", filters=tuple(value["all"] or ()))
    if "any" in value:
        # ``until`` ends a listen; a schedule never stops listening, so it is ignored.
        return SchedulePlan(kind, spec, mode="any", filters=tuple(value["any"] or ()))
    if "one" in value:
        return SchedulePlan(kind, spec, mode="one", filters=(value["one"],))
    raise DefinitionError([Problem(pointer, "an event consumption strategy (one, any or all) is required")])


def plan_of(schedule: ScheduleRecord) -> SchedulePlan:
    """The plan of a stored schedule (checked when it was deployed)."""
    planned = plan({"schedule": schedule.spec})
    assert planned is not None, "a stored schedule has a spec"
    return planned


def schedule_record(definition: DefinitionRecord, planned: SchedulePlan, now: datetime) -> ScheduleRecord:
    """The schedule row a freshly deployed definition gets."""
    return ScheduleRecord(
        namespace=definition.namespace,
        name=definition.name,
        version=definition.version,
        kind=planned.kind,
        spec=planned.spec,
        next_due=planned.first_due(now),
    )


# -- deployment ----------------------------------------------------------------------------

# Scheduler services of this process, by engine: told when a deployment here changed a
# schedule, so a new tick is not noticed only at their next poll.
_listeners: weakref.WeakKeyDictionary[Engine, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def add_deploy_listener(engine: Engine, callback: Callable[[], None]) -> None:
    """Call ``callback`` after each deployment through ``engine`` that stored a schedule."""
    _listeners.setdefault(engine, []).append(callback)


def remove_deploy_listener(engine: Engine, callback: Callable[[], None]) -> None:
    """Undo :func:`add_deploy_listener`."""
    callbacks = _listeners.get(engine, [])
    if callback in callbacks:
        callbacks.remove(callback)


async def put_definition(engine: Engine, record: DefinitionRecord) -> tuple[DefinitionRecord, bool]:
    """``store.put_definition`` plus the definition's schedule (checked before anything
    is stored, so an invalid one is refused like any invalid definition).

    Two transactions: a crash between them leaves the definition without its schedule
    row, which deploying it again, or the scheduler's start-up reconciliation, repairs.
    """
    planned = plan(record.document)
    stored, created = await engine.store.put_definition(record)
    if await sync_schedule(engine.store, stored, planned):
        for callback in list(_listeners.get(engine, ())):
            callback()
    return stored, created


async def sync_schedule(store: Store, definition: DefinitionRecord, planned: SchedulePlan | None) -> bool:
    """Give ``definition``'s schedule (or its absence) to its workflow if it is the latest
    version; True when a schedule row exists afterwards."""
    if planned is None and await store.get_schedule(definition.namespace, definition.name) is None:
        return False  # the common case: nothing scheduled, before or now
    record = None if planned is None else schedule_record(definition, planned, await store.now())
    stored = await store.put_schedule(definition.namespace, definition.name, definition.version, record)
    return stored is not None


async def reconcile(store: Store) -> int:
    """Make every workflow's schedule match its latest deployed version; how many exist.

    For definitions deployed before schedules were stored, and for a deployment that
    crashed between storing the definition and its schedule.
    """
    latest: dict[tuple[str, str], DefinitionRecord] = {}
    for definition in await store.list_definitions():  # sorted: the last version wins
        latest[(definition.namespace, definition.name)] = definition
    scheduled = 0
    for definition in latest.values():
        try:
            planned = plan(definition.document)
        except DefinitionError as exc:
            log.warning(
                "Workflow %s/%s/%s has an invalid schedule, not scheduled: %s",
                definition.namespace, definition.name, definition.version, exc.message,
            )  # fmt: skip
            continue
        existing = await store.get_schedule(definition.namespace, definition.name)
        if existing is not None and planned is not None and existing.version == definition.version:
            scheduled += 1
            continue
        scheduled += await sync_schedule(store, definition, planned)
    return scheduled


# -- time-driven runs ----------------------------------------------------------------------


def tick_instance(schedule: ScheduleRecord) -> InstanceRecord:
    """The instance a due tick of ``schedule`` starts: pending, for any worker to claim."""
    due = schedule.next_due.isoformat() if schedule.next_due else ""
    return InstanceRecord(
        id=new_instance_id(),
        namespace=schedule.namespace,
        name=schedule.name,
        version=schedule.version,
        status=InstanceStatus.PENDING,
        input={},
        idempotency_key=_key(schedule, f"tick@{due}#{schedule.revision}"),
    )


def _key(schedule: ScheduleRecord, what: str) -> str:
    digest = hashlib.sha256(f"{schedule.namespace}/{schedule.name}\n{what}".encode()).hexdigest()
    return f"{KEY_PREFIX}{digest}"


# -- event-driven runs ---------------------------------------------------------------------


async def start_for_event(
    engine: Engine,
    event: dict[str, JSON],
    key: str,
    *,
    duplicate: bool = False,
    schedules: Sequence[ScheduleRecord] | None = None,
) -> int:
    """Start the runs an event triggers (``schedule.on``); returns how many it started.

    ``duplicate``: the event was kept before (published again). ``one``/``any`` runs are
    started idempotently, so a retried publish repairs a start that failed the first
    time; ``all`` sets only take events the first time they are published.
    ``schedules``: the ``on`` schedules, when the caller read them already.
    """
    started = 0
    if schedules is None:
        schedules = await engine.store.list_schedules(ScheduleKind.ON)
    for schedule in schedules:
        try:
            planned = plan_of(schedule)
        except DefinitionError:
            continue  # checked when deployed; a spec a later release refuses starts nothing
        matched = planned.matches(event)
        if not matched:
            continue
        if planned.mode == "all":
            if not duplicate:
                started += await _collect(engine, schedule, planned, event, key)
        else:
            started += await _start(engine, schedule, [event], _key(schedule, f"event#{key}"))
    return started


async def _start(engine: Engine, schedule: ScheduleRecord, events: list[JSON], idempotency_key: str) -> int:
    try:
        _, created = await engine.submit(
            schedule.namespace, schedule.name, schedule.version, events, idempotency_key=idempotency_key
        )
    except InstanceConflict:
        return 0  # started already for this event (by another version, or with other content)
    except (InputValidationError, DefinitionNotFound) as exc:
        # The DSL: scheduling faults are invisible to the workflow; the operator sees them here.
        log.warning(
            "Workflow %s/%s/%s not started for its schedule: %s",
            schedule.namespace, schedule.name, schedule.version, exc.message,
        )  # fmt: skip
        return 0
    return int(created)


async def _collect(
    engine: Engine, schedule: ScheduleRecord, planned: SchedulePlan, event: dict[str, JSON], key: str
) -> int:
    """Put an event into the first incomplete set of an ``all`` schedule that has room for
    it (a filter it matches still open, equal correlation values); a set that becomes
    complete starts a run in the same transaction."""
    store = engine.store
    current: ScheduleRecord | None = schedule
    for _ in range(_COLLECT_ATTEMPTS):
        if current is None or current.kind is not ScheduleKind.ON or current.spec != schedule.spec:
            return 0  # redeployed meanwhile: the new schedule's own rules apply
        sets: list[dict[str, JSON]] = [dict(s) for s in current.pending or []]
        if any(key in s["keys"] for s in sets):
            return 0
        chosen = _place(sets, planned, event, key)
        instance = None
        if len(chosen["events"]) == len(planned.filters):
            sets.remove(chosen)
            events = [chosen["events"][str(n)] for n in range(len(planned.filters))]
            instance = InstanceRecord(
                id=new_instance_id(),
                namespace=current.namespace,
                name=current.name,
                version=current.version,
                status=InstanceStatus.PENDING,
                input=events,
                idempotency_key=_key(current, "events#" + json.dumps(sorted(chosen["keys"]))),
            )
        elif len(sets) > MAX_PENDING_SETS:
            dropped = sets.pop(0)
            log.warning(
                "Workflow %s/%s: more than %d incomplete event sets; dropped the oldest (%d event(s))",
                current.namespace, current.name, MAX_PENDING_SETS, len(dropped["keys"]),
            )  # fmt: skip
        if await store.fire_schedule(current, None, instance, pending=sets or None):
            if instance is None:
                return 0
            engine.notify_work()
            return 1
        current = await store.get_schedule(schedule.namespace, schedule.name)
    log.warning(
        "Event %s not collected for workflow %s/%s: too much contention",
        key,
        schedule.namespace,
        schedule.name,
    )
    return 0


def _place(
    sets: list[dict[str, JSON]], planned: SchedulePlan, event: dict[str, JSON], key: str
) -> dict[str, JSON]:
    """The set ``event`` joins (a new one at the end when none has room), updated."""
    matched = planned.matches(event)
    for candidate in sets:
        for index in matched:
            if str(index) in candidate["events"]:
                continue
            values = correlation_values(planned.filters[index], event)
            known = candidate["corr"]
            if all(known.get(k, v) == v for k, v in values.items()):
                _add(candidate, index, values, event, key)
                return candidate
    fresh: dict[str, JSON] = {"keys": [], "events": {}, "corr": {}}
    index = matched[0]
    _add(fresh, index, correlation_values(planned.filters[index], event), event, key)
    sets.append(fresh)
    return fresh


def _add(
    target: dict[str, JSON], index: int, values: dict[str, JSON], event: dict[str, JSON], key: str
) -> None:
    target["keys"] = [*target["keys"], key]
    target["events"] = {**target["events"], str(index): event}
    target["corr"] = {**target["corr"], **values}
