"""DSL durations: ISO 8601 strings (``PT1S``, ``P1DT2H``) or ``{days, hours, minutes, seconds, ...}``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flowkeeper.errors import standard_error

_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_UNITS = {"days": 1, "hours": 1, "minutes": 1, "seconds": 1, "milliseconds": 1}


def parse_duration(value: Any) -> timedelta:
    """A DSL duration as a ``timedelta``; raises the DSL's validation error when malformed."""
    if isinstance(value, dict):
        unknown = set(value) - set(_UNITS)
        if unknown:
            raise standard_error("validation", f"unknown duration field(s): {', '.join(sorted(unknown))}")
        try:
            return timedelta(
                days=float(value.get("days", 0)),
                hours=float(value.get("hours", 0)),
                minutes=float(value.get("minutes", 0)),
                seconds=float(value.get("seconds", 0)),
                milliseconds=float(value.get("milliseconds", 0)),
            )
        except (TypeError, ValueError):
            raise standard_error("validation", f"invalid duration {value!r}") from None
    if isinstance(value, str):
        match = _ISO.match(value.strip())
        if match and value.strip().upper() not in ("P", "PT"):
            parts = {k: float(v) for k, v in match.groupdict().items() if v}
            weeks = parts.pop("weeks", 0.0)
            return timedelta(weeks=weeks, **parts)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    raise standard_error(
        "validation", f"invalid duration {value!r}: expected ISO 8601 (e.g. PT5S) or an object"
    )
