"""CRON expressions: parsing and the next matching minute (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.definitions.cron import CronError, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # The DSL's example: daily at midnight.
        ("0 0 * * *", "2026-03-10T12:34:56", "2026-03-11T00:00:00"),
        ("0 0 * * *", "2026-03-10T23:59:59", "2026-03-11T00:00:00"),
        # Strictly after: a moment that matches is not its own next time.
        ("0 0 * * *", "2026-03-11T00:00:00", "2026-03-12T00:00:00"),
        ("* * * * *", "2026-03-10T12:00:30", "2026-03-10T12:01:00"),
        ("*/15 * * * *", "2026-03-10T12:07:00", "2026-03-10T12:15:00"),
        ("*/15 * * * *", "2026-03-10T12:45:00", "2026-03-10T13:00:00"),
        ("5/20 * * * *", "2026-03-10T12:26:00", "2026-03-10T12:45:00"),
        ("10-40/10 9 * * *", "2026-03-10T09:40:00", "2026-03-11T09:10:00"),
        ("0 9,17 * * *", "2026-03-10T10:00:00", "2026-03-10T17:00:00"),
        # Year and month carries.
        ("0 0 1 1 *", "2026-12-31T23:59:00", "2027-01-01T00:00:00"),
        ("30 6 31 * *", "2026-04-01T00:00:00", "2026-05-31T06:30:00"),
        # Names, case-insensitive; 7 is Sunday too.
        ("0 12 * jan-mar MON", "2026-03-30T12:00:00", "2027-01-04T12:00:00"),
        ("0 0 * * 7", "2026-03-10T00:00:00", "2026-03-15T00:00:00"),
        ("0 0 * * 0", "2026-03-10T00:00:00", "2026-03-15T00:00:00"),
        ("0 8 * * 1-5", "2026-03-13T09:00:00", "2026-03-16T08:00:00"),  # Friday -> Monday
        # Both day fields restricted: either may match (the 13th, or a Friday).
        ("0 0 13 * 5", "2026-03-01T00:00:00", "2026-03-06T00:00:00"),
        ("0 0 13 * 5", "2026-03-12T00:00:00", "2026-03-13T00:00:00"),
        # Day of week starting with '*': both must match.
        ("0 0 13 * */1", "2026-03-01T00:00:00", "2026-03-13T00:00:00"),
        # Leap days, across the 2100 gap.
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 29 2 *", "2096-03-01T00:00:00", "2104-02-29T00:00:00"),
        # Macros.
        ("@hourly", "2026-03-10T12:00:00", "2026-03-10T13:00:00"),
        ("@daily", "2026-03-10T12:00:00", "2026-03-11T00:00:00"),
        ("@weekly", "2026-03-10T12:00:00", "2026-03-15T00:00:00"),
        ("@monthly", "2026-03-10T12:00:00", "2026-04-01T00:00:00"),
        ("@yearly", "2026-03-10T12:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_next_time(expression: str, after: str, expected: str) -> None:
    assert parse_cron(expression).next_after(at(after)) == at(expected)


def test_times_in_other_zones_are_read_as_the_same_instant() -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 3, 10, 0, 30, tzinfo=paris)  # 23:30 UTC the day before
    assert parse_cron("0 0 * * *").next_after(moment) == at("2026-03-10T00:00:00")
    assert parse_cron("0 0 * * *").next_after(moment).tzinfo is UTC


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 * *", "has 4 field(s); expected 5"),
        ("0 0 0 * * *", "has 6 field(s)"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("* 24 * * *", "hour value 24 is out of range 0-23"),
        ("* * 0 * *", "day of month value 0 is out of range 1-31"),
        ("* * * 13 *", "month value 13 is out of range 1-12"),
        ("* * * * 8", "day of week value 8 is out of range 0-7"),
        ("* * * FOO *", "invalid month value 'FOO'"),
        ("*/0 * * * *", "invalid step 0"),
        ("30-10 * * * *", "range '30-10' runs backwards"),
        ("1,,2 * * * *", "invalid minute field"),
        ("@reboot", "has 1 field(s)"),
        ("0 0 30 2 *", "never matches a date"),
        ("0 0 31 4,6,9,11 *", "never matches a date"),
    ],
)
def test_malformed_expressions_are_refused_with_the_reason(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cron(expression)


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_cron("* * * * *").next_after(datetime(2026, 1, 1))


_MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
_EXPRESSIONS = st.sampled_from(
    [
        "*/7 * * * *",
        "0 */5 * * *",
        "15 3 * * 1-5",
        "0 0 1,15 * *",
        "0 0 13 * 5",
        "59 23 31 12 *",
        "0 0 29 2 *",
    ]
)


@given(_EXPRESSIONS, _MOMENTS)
def test_the_next_time_matches_and_nothing_in_between_does(expression: str, moment: datetime) -> None:
    cron = parse_cron(expression)
    found = cron.next_after(moment)
    assert found > moment
    assert found.second == found.microsecond == 0
    assert cron.matches(found)
    # No earlier minute matches (checked minute by minute when the gap is small).
    gap = found - moment
    if gap <= timedelta(days=2):
        probe = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while probe < found:
            assert not cron.matches(probe)
            probe += timedelta(minutes=1)
