from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kubetrail.errors import QueryError
from kubetrail.store.times import to_ns

NOW = 1_764_201_600 * 10**9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", NOW - 15 * 60 * 10**9),
        ("1.5h", NOW - 5400 * 10**9),
        ("7d", NOW - 7 * 86400 * 10**9),
        ("250ms", NOW - 250 * 10**6),
        ("now", NOW),
        ("2025-11-27T00:00:00Z", NOW),
        ("2025-11-27T01:00:00+01:00", NOW),
        ("2025-11-27 00:00:00", NOW),  # no zone: UTC
        (None, None),
        ("", None),
        (12345, 12345),
    ],
)
def test_to_ns(text: object, expected: int | None) -> None:
    assert to_ns(text, NOW) == expected  # type: ignore[arg-type]


def test_datetimes_must_carry_a_zone() -> None:
    assert to_ns(datetime(2025, 11, 27, tzinfo=UTC)) == NOW
    assert to_ns(datetime(2025, 11, 27, 2, tzinfo=timezone(timedelta(hours=2)))) == NOW
    with pytest.raises(QueryError):
        to_ns(datetime(2025, 11, 27))
    with pytest.raises(QueryError):
        to_ns("last tuesday")
