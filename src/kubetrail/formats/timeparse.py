"""Bulk timestamp parsing: one Arrow cast per batch, with bisection only around impossible values.

RFC 3339 with nanoseconds and a zone (``Z`` or ``+02:00``), as containerd, CRI-O and docker write
it, is what Arrow's ISO-8601 cast reads natively. A value it cannot read (month 13, February 30, no
zone, garbage) becomes null; the caller falls back to the receive time and flags ``bad_timestamp``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.formats.kernels import cast_or_bisect, to_np
from kubetrail.schema import TIMESTAMP

__all__ = ["now_ns", "parse_rfc3339", "to_epoch_ns"]


def now_ns(now: datetime | None) -> int:
    """Receive time in epoch nanoseconds (``now`` is the server's clock, passed in for tests)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def to_epoch_ns(ts: pa.Array) -> npt.NDArray[np.int64]:
    """Timestamps (nulls allowed) as int64 nanoseconds; nulls become ``INT64_MIN``."""
    ints = ts.cast(pa.int64())
    return to_np(ints, np.iinfo(np.int64).min).astype(np.int64)


def parse_rfc3339(values: pa.Array, fallback_ns: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Parse RFC 3339 strings (binary or string); returns epoch ns and a mask of unreadable values.

    Unreadable (and null) values get ``fallback_ns``.
    """
    n = len(values)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.zeros(0, dtype=bool)
    strings, _ = cast_or_bisect(values, pa.string()) if values.type != pa.string() else (values, None)
    parsed, _ = cast_or_bisect(strings, TIMESTAMP)
    bad = to_np(pc.is_null(parsed))
    ns = to_np(parsed.cast(pa.int64()), fallback_ns)
    return ns.astype(np.int64, copy=False), bad
