"""The schedule record: what starts a deployed workflow without anyone asking (DSL ``schedule``).

A sibling of :mod:`flowkeeper.records` (same rules: immutable values, no storage
knowledge), kept in its own module while the records module is being changed by other
work; it may move there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

JSON = Any


class ScheduleKind(StrEnum):
    """Which of the DSL's ``schedule`` properties drives a schedule.

    - ``every``: a fixed period (``next_due`` advances by it, whatever earlier runs do).
    - ``cron``: a CRON expression (UTC).
    - ``after``: a delay after the previous scheduled run finished; ``next_due`` is
      unset while that run goes on.
    - ``on``: events; each match (or, for ``all``, each complete set) starts a run.
      ``next_due`` is always unset; ``pending`` holds the incomplete sets of ``all``.
    """

    EVERY = "every"
    CRON = "cron"
    AFTER = "after"
    ON = "on"


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """The schedule of one workflow ``namespace/name``, owned by its latest deployed version.

    ``spec`` is the definition's ``schedule`` object as written. ``revision`` counts the
    writes to the row: a change is applied only on top of the revision it was computed
    from, so that of several replicas acting on the same due time exactly one does.
    """

    namespace: str
    name: str
    version: str
    kind: ScheduleKind
    spec: dict[str, JSON]
    next_due: datetime | None = None
    last_instance_id: str | None = None
    pending: JSON = None
    revision: int = 0
    updated_on: datetime | None = None
