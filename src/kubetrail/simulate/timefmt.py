"""Bulk timestamp formatting: each distinct second is formatted once, then only the fraction per line.

Timestamps are integer nanoseconds since the epoch (``numpy.int64``); nothing here reads the wall clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

__all__ = [
    "NS",
    "format_seconds",
    "micro_time",
    "parse_start",
    "rfc3339_nano",
    "second_index",
]

NS = 1_000_000_000


def parse_start(value: str | datetime) -> int:
    """An ISO-8601 start time (naive means UTC) as epoch nanoseconds."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def second_index(ts_ns: np.ndarray) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Split timestamps into (index into the distinct seconds, the distinct seconds, nanosecond fraction)."""
    secs = ts_ns // NS
    uniq, inverse = np.unique(secs, return_inverse=True)
    return inverse, [int(s) for s in uniq], ts_ns - secs * NS


_FORMAT_CACHE: dict[str, dict[int, str]] = {}


def format_seconds(seconds: list[int], fmt: str) -> list[str]:
    """``time.strftime`` in UTC for each second (``%b`` etc. use the C locale names), memoized: every
    stream of a run formats the same seconds."""
    cache = _FORMAT_CACHE.setdefault(fmt, {})
    if len(cache) > 200_000:
        cache.clear()
    out = []
    for s in seconds:
        text = cache.get(s)
        if text is None:
            text = cache[s] = time.strftime(fmt, time.gmtime(s))
        out.append(text)
    return out


def rfc3339_nano(ts_ns: np.ndarray) -> list[str]:
    """Go's ``time.RFC3339Nano`` as containerd and docker write it: trailing zeros of the fraction dropped."""
    inverse, seconds, frac = second_index(ts_ns)
    prefix = format_seconds(seconds, "%Y-%m-%dT%H:%M:%S")
    out = []
    for i, f in zip(inverse.tolist(), frac.tolist(), strict=True):
        digits = f"{f:09d}".rstrip("0")
        out.append(f"{prefix[i]}.{digits}Z" if digits else f"{prefix[i]}Z")
    return out


_SECOND_CACHE: dict[int, str] = {}


def micro_time(ts_ns: int) -> str:
    """One ``2026-01-01T12:00:00.123456Z`` (``metav1.MicroTime``); bulk: ``arrowtext.rfc3339_micro``."""
    secs = ts_ns // NS
    prefix = _SECOND_CACHE.get(secs)
    if prefix is None:
        if len(_SECOND_CACHE) > 100_000:
            _SECOND_CACHE.clear()
        prefix = _SECOND_CACHE[secs] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{prefix}.{(ts_ns - secs * NS) // 1000:06d}Z"
