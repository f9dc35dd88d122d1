"""CRON expressions of a workflow's ``schedule.cron``: parse once, compute the next time.

The classic five fields, evaluated in UTC::

    minute (0-59)  hour (0-23)  day of month (1-31)  month (1-12, JAN-DEC)  day of week (0-7, SUN-SAT)

(0 and 7 are both Sunday.)

Each field is ``*``, a value, a range ``a-b``, any of these with a step ``/n``
(``*/15``, ``10-40/10``, ``5/20`` = from 5 to the end in steps of 20), or a
comma-separated list of them. Names are case-insensitive. The macros ``@yearly``
(``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``
stand for their usual expressions.

Day of month and day of week combine as in Vixie cron: when both are restricted
(neither starts with ``*``) a day matches if either matches; otherwise both must.

Why not a library: five fields and this one rule are all the DSL needs, and the next
time is found field by field (month, day, hour, minute), a few dozen steps at most.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CronError", "CronExpression", "parse_cron"]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: Search horizon for the next time: past it an expression never matches (``0 0 30 2 *``).
#: Eight years always contain a 29 February (2100 is no leap year; 2096 and 2104 are).
_HORIZON = timedelta(days=8 * 366 + 2)

_ITEM = re.compile(r"^(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?$")


class CronError(ValueError):
    """A malformed CRON expression; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    #: The first name stands for this number (months start at 1, days at 0).
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed expression: the allowed values of each field."""

    source: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    #: Both day fields restricted: a day matches when either does.
    either_day: bool

    def _day_matches(self, moment: datetime) -> bool:
        by_date = moment.day in self.days
        by_weekday = (moment.isoweekday() % 7) in self.weekdays
        return (by_date or by_weekday) if self.either_day else (by_date and by_weekday)

    def matches(self, moment: datetime) -> bool:
        """Whether the expression fires at this minute (UTC)."""
        moment = moment.astimezone(UTC)
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (aware; returned in UTC).

        Raises ``CronError`` when the expression matches no date (``0 0 31 2 *``).
        """
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        t = start
        while t - start <= _HORIZON:
            if t.month not in self.months:
                # The first minute of the next month.
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                later = [m for m in self.minutes if m > t.minute]
                t = t.replace(minute=min(later)) if later else t.replace(minute=0) + timedelta(hours=1)
            else:
                return t
        raise CronError(f"cron expression {self.source!r} never matches a date")


def parse_cron(text: str) -> CronExpression:
    """Parse a five-field expression or a macro; ``CronError`` when malformed or impossible."""
    if not isinstance(text, str):
        raise CronError(f"a cron expression is a string (got {type(text).__name__})")
    source = text.strip()
    expanded = _MACROS.get(source.lower(), source)
    parts = expanded.split()
    if len(parts) != 5:
        raise CronError(
            f"cron expression {text!r} has {len(parts)} field(s); expected 5 "
            "(minute hour day-of-month month day-of-week) or a macro such as @daily"
        )
    values = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])  # 7 is Sunday too
    expression = CronExpression(
        source=source,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        either_day=not parts[2].startswith("*") and not parts[4].startswith("*"),
    )
    # Refuse impossible dates now (``0 0 30 2 *``), not when the schedule first runs.
    expression.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    return expression


def _value(token: str, spec: _Field) -> int:
    upper = token.upper()
    if upper in spec.names:
        return spec.names.index(upper) + spec.name_base
    if not token.isdigit():
        raise CronError(f"invalid {spec.name} value {token!r}")
    number = int(token)
    if not spec.low <= number <= spec.high:
        raise CronError(f"{spec.name} value {number} is out of range {spec.low}-{spec.high}")
    return number


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    allowed: set[int] = set()
    for item in text.split(","):
        found = _ITEM.match(item)
        if found is None:
            raise CronError(f"invalid {spec.name} field {text!r}")
        span, step_text = found.groups()
        step = int(step_text) if step_text is not None else 1
        if step < 1:
            raise CronError(f"invalid step {step} in {spec.name} field {text!r}")
        if span == "*":
            low, high = spec.low, spec.high
        elif "-" in span:
            first, last = span.split("-")
            low, high = _value(first, spec), _value(last, spec)
            if low > high:
                raise CronError(f"{spec.name} range {span!r} runs backwards")
        else:
            low = _value(span, spec)
            # ``5/20``: from 5 to the end of the range in steps of 20.
            high = spec.high if step_text is not None else low
        allowed.update(range(low, high + 1, step))
    return frozenset(allowed)
