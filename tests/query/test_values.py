"""Typed values: numbers, ISO and relative times, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetrail.query.values import parse_duration, parse_number, parse_time, timestamp_sql

NOW = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("400", 400), ("-3", -3), ("2.5", 2.5), ("1e3", 1000.0), (" 7 ", 7), ("abc", None), ("4xx", None),
     ("nan", None), ("inf", None), ("1e999", None), ("", None)],
)  # fmt: skip
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "whole_day"),
    [
        ("now", NOW, False),
        ("now-15m", NOW - timedelta(minutes=15), False),
        ("now+1h", NOW + timedelta(hours=1), False),
        ("now-1d/d", datetime(2024, 4, 30, tzinfo=UTC), False),
        ("now/h", datetime(2024, 5, 1, 12, tzinfo=UTC), False),
        ("24h", NOW - timedelta(hours=24), False),
        ("2w", NOW - timedelta(weeks=2), False),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC), True),
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC), False),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC), False),
        ("2024-05-01 10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC), False),
    ],
)
def test_parse_time(text: str, expected: datetime, whole_day: bool) -> None:
    assert parse_time(text, NOW) == (expected, whole_day)


@pytest.mark.parametrize("text", ["yesterday", "now-", "now-1y", "2024-13-01", "", "99999999999999999999d"])
def test_unreadable_times(text: str) -> None:
    assert parse_time(text, NOW) is None


def test_duration_and_literal() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1y") is None
    assert timestamp_sql(datetime(5, 1, 1, tzinfo=UTC)) == "TIMESTAMPTZ '0005-01-01 00:00:00.000000+00:00'"
