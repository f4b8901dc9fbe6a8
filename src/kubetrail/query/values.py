"""Typed values in queries: numbers, ISO timestamps and relative times (``now-1h``, ``24h``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["parse_duration", "parse_number", "parse_time", "timestamp_sql"]

_RELATIVE = re.compile(r"now\s*(?:([-+])\s*([0-9]+)\s*(ms|s|m|h|d|w))?(?:/(s|m|h|d))?$", re.IGNORECASE)
_DURATION = re.compile(r"([0-9]+)\s*(ms|s|m|h|d|w)$", re.IGNORECASE)
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


def parse_number(text: str) -> int | float | None:
    """An int or float, or ``None`` when ``text`` is not a plain decimal number."""
    text = text.strip()
    if not _NUMBER.match(text):
        return None
    try:
        return int(text)
    except ValueError:
        value = float(text)
        return value if value == value and abs(value) != float("inf") else None


def parse_duration(text: str) -> timedelta | None:
    """``90s``, ``15m``, ``24h``, ``7d``, ``2w`` -> timedelta (``None`` if not a duration)."""
    m = _DURATION.match(text.strip())
    if not m:
        return None
    try:
        return int(m.group(1)) * _UNITS[m.group(2).lower()]
    except OverflowError:
        return None


def _truncate(t: datetime, unit: str) -> datetime:
    if unit == "s":
        return t.replace(microsecond=0)
    if unit == "m":
        return t.replace(second=0, microsecond=0)
    if unit == "h":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def parse_time(text: str, now: datetime) -> tuple[datetime, bool] | None:
    """A point in time and whether it names a whole day (``2024-05-01``); ``None`` if unreadable.

    Accepts ISO 8601 (``Z`` or an offset; naive means UTC), ``now``, ``now-15m``, ``now-1d/d``
    (rounded down, as in Elasticsearch date math) and a bare duration ``24h`` meaning ``now-24h``.
    """
    text = text.strip()
    try:
        m = _RELATIVE.match(text)
        if m:
            t = now
            if m.group(2):
                delta = int(m.group(2)) * _UNITS[m.group(3).lower()]
                t = t - delta if m.group(1) == "-" else t + delta
            if m.group(4):
                t = _truncate(t, m.group(4).lower())
            return t, False
        duration = parse_duration(text)
        if duration is not None:
            return now - duration, False
        t = datetime.fromisoformat(text.replace("z", "Z"))
    except (ValueError, OverflowError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC), bool(_DATE_ONLY.match(text))


def timestamp_sql(t: datetime) -> str:
    """A DuckDB TIMESTAMPTZ literal (microsecond precision, UTC)."""
    return f"TIMESTAMPTZ '{t.astimezone(UTC).isoformat(sep=' ', timespec='microseconds')}'"
