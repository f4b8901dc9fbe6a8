"""Vectorized timestamp helpers shared by the node-log parsers (klog, syslog, journald, audit).

klog and RFC 3164 syslog write no year. The year is the one that puts the timestamp closest to a
reference time (the receive time, or the container runtime's own timestamp), so a December line read
on 1 January lands in the previous year and a 1 January line from a node whose clock runs ahead,
read on 31 December, lands in the next one. Those formats carry no zone either: they are read as UTC
(kubelets and control-plane pods log in UTC on every managed distribution we know of).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.schema import TIMESTAMP

__all__ = [
    "bisect_failures",
    "fraction_to_ns",
    "infer_year",
    "month_numbers",
    "now_ns",
    "ns_to_timestamp",
    "parse_rfc3339",
    "to_ns",
]

_NS_PER_S = 1_000_000_000
_MONTHS = np.array(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], dtype=object
)


def now_ns(now: datetime | None) -> int:
    """Nanoseconds since the epoch of ``now`` (naive datetimes are taken as UTC)."""
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return int(now.timestamp()) * _NS_PER_S + now.microsecond * 1000


def to_ns(arr: pa.Array) -> np.ndarray:
    """Integer column (nulls as -1) as an int64 numpy array."""
    return np.asarray(pc.fill_null(arr.cast(pa.int64()), -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def infer_year(
    month: np.ndarray,
    day: np.ndarray,
    hour: np.ndarray,
    minute: np.ndarray,
    second: np.ndarray,
    nanos: np.ndarray,
    reference_ns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (ns since epoch) for year-less dates, and a mask of rows that are valid dates.

    Every argument is an int64 array of the same length (-1 marks a missing part). Three candidate
    years around each row's reference are tried; the valid one nearest the reference wins. Rows
    that are no valid date in any candidate year (month 13, 30 February, hour 25) come back invalid.
    """
    n = month.shape[0]
    best = np.zeros(n, dtype=np.int64)
    best_dist = np.full(n, np.iinfo(np.int64).max, dtype=np.uint64)
    found = np.zeros(n, dtype=bool)
    ref_year = reference_ns.astype("datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970
    time_ok = (hour >= 0) & (hour < 24) & (minute >= 0) & (minute < 60) & (second >= 0) & (second <= 60)
    time_ok &= (nanos >= 0) & (nanos < _NS_PER_S) & (month >= 1) & (month <= 12) & (day >= 1)
    safe_month = np.clip(month, 1, 12)
    intraday = ((hour * 60 + minute) * 60 + second) * _NS_PER_S + nanos
    for delta in (-1, 0, 1):
        months = (ref_year + delta - 1970) * 12 + (safe_month - 1)
        first = months.astype("datetime64[M]").astype("datetime64[D]")
        days_in_month = ((months + 1).astype("datetime64[M]").astype("datetime64[D]") - first).astype(
            np.int64
        )
        ok = time_ok & (day <= days_in_month)
        ts = first.astype(np.int64) * (86400 * _NS_PER_S) + (day - 1) * (86400 * _NS_PER_S) + intraday
        dist = np.abs(ts - reference_ns).astype(np.uint64)
        better = ok & (dist < best_dist)
        best = np.where(better, ts, best)
        best_dist = np.where(better, dist, best_dist)
        found |= ok
    return best, found


def month_numbers(names: pa.Array) -> np.ndarray:
    """'Jan'..'Dec' -> 1..12 (-1 for anything else), vectorized."""
    idx = pc.index_in(names, value_set=pa.array(list(_MONTHS), type=pa.string()))
    return np.asarray(pc.fill_null(idx, -2).to_numpy(zero_copy_only=False), dtype=np.int64) + 1


def fraction_to_ns(frac: pa.Array) -> np.ndarray:
    """Fractional-second digits ('692994', '5', '') -> nanoseconds (-1 when more than 9 digits)."""
    digits = pc.fill_null(frac, "")
    length = np.asarray(pc.utf8_length(digits).to_numpy(zero_copy_only=False), dtype=np.int64)
    padded = pc.utf8_rpad(digits, width=9, padding="0")
    padded = pc.if_else(pc.greater(pc.utf8_length(padded), 9), "x", padded)
    value = pc.cast(pc.if_else(pc.match_substring_regex(padded, r"^\d{9}$"), padded, None), pa.int64())
    out = np.asarray(pc.fill_null(value, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.where(length > 9, -1, out)


def parse_rfc3339(strings: pa.Array) -> tuple[pa.Array, pa.Array]:
    """RFC 3339 strings -> (timestamp[ns, UTC] with nulls where unparseable, mask of unparseable).

    Arrow's ISO-8601 cast handles fractions and zone offsets; one bad value fails the whole cast,
    so bad values are located by bisection (cost grows with the number of bad values, not rows).
    A space instead of ``T`` and a missing zone (read as UTC) are accepted as well.
    """
    s = strings.cast(pa.string())
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d\d-\d\d) ", r"\1T")
    s = pc.if_else(
        pc.match_substring_regex(s, r"(Z|z|[+-]\d\d:?\d\d)$"), s, pc.binary_join_element_wise(s, "Z", "")
    )
    bad = bisect_failures(s, lambda part: part.cast(TIMESTAMP))
    if bad:
        mask = np.zeros(len(s), dtype=bool)
        mask[bad] = True
        s = pc.if_else(pa.array(mask), None, s)
    else:
        mask = np.zeros(len(s), dtype=bool)
    ts = s.cast(TIMESTAMP)
    was_given = pc.is_valid(strings)
    return ts, pc.and_(pa.array(mask), was_given)


def bisect_failures(arr: pa.Array, op: object, lo: int = 0, hi: int | None = None) -> list[int]:
    """Indices of the non-null rows for which the vectorized ``op`` raises, found by bisection."""
    if hi is None:
        hi = len(arr)
    if hi <= lo:
        return []
    try:
        op(arr.slice(lo, hi - lo))  # type: ignore[operator]
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OverflowError):
        if hi - lo == 1:
            return [lo]
        mid = (lo + hi) // 2
        return bisect_failures(arr, op, lo, mid) + bisect_failures(arr, op, mid, hi)


def ns_to_timestamp(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """int64 ns since epoch -> timestamp[ns, UTC] array (nulls where ``valid`` is false)."""
    mask = None if valid is None else ~valid
    return pa.array(values, type=pa.int64(), mask=mask).cast(TIMESTAMP)
