"""Durations as people write them in settings: one parser, two pydantic field types.

Accepted forms (all non-negative; there is no sign syntax):

- a ``timedelta``, or a number of seconds (``30``, ``1.5``, ``"30"``);
- the operations guide's .NET ``TimeSpan`` form ``[d.]hh:mm:ss[.fffffff]``
  (``00:00:10``, ``00:00:00.100``, ``1.00:00:00``, ``90.00:00:00``);
- ISO 8601 durations with weeks, days, hours, minutes and seconds
  (``PT30S``, ``P1D``, ``PT1H30M``, ``P1W``);
- short forms ``250ms``, ``10s``, ``5m``, ``2h``, ``1d``, also combined (``1h30m``).

ISO years and months are refused: they have no fixed length.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

__all__ = ["Duration", "PositiveDuration", "parse_duration"]

_NUMBER = r"\d+(?:\.\d+)?"
_DOTNET = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?")
_ISO = re.compile(
    rf"P(?:({_NUMBER})W)?(?:({_NUMBER})D)?(?:T(?:({_NUMBER})H)?(?:({_NUMBER})M)?(?:({_NUMBER})S)?)?"
)
_SHORT_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_SHORT_WHOLE = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HINT = "use seconds (30), 250ms/10s/5m/2h/1d, 00:00:10, 1.00:00:00 or ISO 8601 (PT10S)"


def parse_duration(value: object) -> timedelta:
    """Turn any accepted duration form into a ``timedelta``.

    Raises ``ValueError`` with a plain message (naming the value and the accepted forms)
    for anything else, including negative values.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"duration must not be negative (got {value})")
        return value
    # bool is an int subclass; True seconds is never what someone meant.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {value!r}: {_HINT}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"duration must be a finite number of seconds >= 0 (got {value!r})")
        return _seconds(value, value)
    return _parse_text(value)


def _parse_text(value: str) -> timedelta:
    text = value.strip()
    if re.fullmatch(_NUMBER, text):
        return _seconds(float(text), value)
    if match := _DOTNET.fullmatch(text):
        days, hours, minutes, seconds, fraction = match.groups()
        if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 59:
            raise ValueError(f"invalid duration {value!r}: hours must be 0-23, minutes and seconds 0-59")
        # Up to 7 fraction digits (.NET ticks); timedelta keeps microseconds.
        micros = int((fraction or "").ljust(6, "0")[:6])
        clock = timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=micros)
        return timedelta(days=int(days or 0)) + clock
    upper = text.upper()
    if upper.startswith("P"):
        return _parse_iso(upper, value)
    if _SHORT_WHOLE.fullmatch(text.lower()):
        total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _SHORT_PART.findall(text.lower()))
        return _seconds(total, value)
    raise ValueError(f"invalid duration {value!r}: {_HINT}")


def _parse_iso(upper: str, original: str) -> timedelta:
    date_part = upper.partition("T")[0]
    if "Y" in date_part or "M" in date_part:
        raise ValueError(f"invalid duration {original!r}: ISO years and months have no fixed length")
    match = _ISO.fullmatch(upper)
    if match is None or not any(match.groups()) or upper.endswith("T"):
        raise ValueError(f"invalid duration {original!r}: {_HINT}")
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    return _seconds(total, original)


def _seconds(total: float, original: object) -> timedelta:
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"duration too large (got {original!r})") from None


def _require_positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be greater than 0")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A settings field holding a duration >= 0, written in any form ``parse_duration`` accepts."""

PositiveDuration = Annotated[Duration, AfterValidator(_require_positive)]
"""A ``Duration`` that must be greater than zero (intervals, timeouts, retentions)."""
