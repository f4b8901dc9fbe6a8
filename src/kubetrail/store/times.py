"""Time bounds for searches: ``24h``/``15m`` ago, ISO 8601, datetimes or epoch nanoseconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from kubetrail.errors import QueryError

__all__ = ["to_ns"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_NS = {
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 604800 * 10**9,
}


def to_ns(value: datetime | int | float | str | None, now_ns: int | None = None) -> int | None:
    """A time bound as ns since the epoch: datetime, ns int, ``24h``/``15m`` ago, or ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise QueryError(f"time {value.isoformat()} has no timezone")
        return round(value.timestamp() * 1_000_000) * 1000
    if isinstance(value, int | float):
        return int(value)
    match = _RELATIVE.match(value)
    if match:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(float(match.group(1)) * _UNIT_NS[match.group(2)])
    if value.strip().lower() == "now":
        return time.time_ns() if now_ns is None else now_ns
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"cannot read time {value!r} (use 24h, 15m, 7d or ISO 8601)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return to_ns(parsed)
