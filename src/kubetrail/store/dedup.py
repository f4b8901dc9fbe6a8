"""Exactly-once storage: every ``event.id`` is stored at most once, across re-appends and restarts.

Why hour partitions: a re-delivered event has the same ``event.id`` *and* the same ``@timestamp``
(parsing is deterministic), so it lands in the same hour; the seen-set of one hour is all a new
row has to be checked against. Per hour the store keeps a sorted numpy array of 64-bit hashes of
the ids in its segments and tail (rebuilt from the segments' ``event.id`` column after a restart,
an LRU of ``dedup_cache_hours`` hours in memory). A hash hit is confirmed against the exact ids
(tail and segment files), so a hash collision never drops an event. Rows without an id cannot be
deduplicated and are always kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.store.tokens import distinct, hash_strings

__all__ = ["SeenSets", "first_occurrences", "ids_hashes"]


def first_occurrences(ids: pa.Array, hashes: np.ndarray) -> np.ndarray:
    """Mask keeping the first row of each id within one batch (null ids are all kept)."""
    valid = ids.is_valid().to_numpy(zero_copy_only=False)
    keep = np.ones(len(ids), dtype=bool)
    hv = hashes[valid]
    if len(distinct(hv)) == len(hv):
        return keep  # hash-distinct means string-distinct: the common case costs one sort
    rows = np.flatnonzero(valid)
    table = pa.table({"id": ids.filter(pa.array(valid)), "row": pa.array(rows)})
    firsts = table.group_by("id", use_threads=False).aggregate([("row", "min")]).column("row_min")
    keep[rows] = False
    keep[firsts.to_numpy()] = True
    return keep


class SeenSets:
    """Per-hour sorted hash arrays of stored ids, loaded lazily and evicted least-recently-used."""

    def __init__(self, max_hours: int, load: Callable[[int], np.ndarray]) -> None:
        self.max_hours = max_hours
        self._load = load
        self._hours: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, hour: int) -> np.ndarray:
        if hour in self._hours:
            self._hours.move_to_end(hour)
            return self._hours[hour]
        arr = distinct(self._load(hour))
        self._hours[hour] = arr
        while len(self._hours) > self.max_hours:
            self._hours.popitem(last=False)
        return arr

    def add(self, hour: int, hashes: np.ndarray) -> None:
        base = self.get(hour)
        new = distinct(hashes)
        if len(new):
            self._hours[hour] = np.insert(base, np.searchsorted(base, new), new)

    def invalidate(self, hour: int | None = None) -> None:
        if hour is None:
            self._hours.clear()
        else:
            self._hours.pop(hour, None)

    def maybe_seen(self, hour: int, hashes: np.ndarray) -> np.ndarray:
        """Mask of hashes present in the hour's set (candidates to confirm exactly)."""
        base = self.get(hour)
        if len(base) == 0 or len(hashes) == 0:
            return np.zeros(len(hashes), dtype=bool)
        pos = np.minimum(np.searchsorted(base, hashes), len(base) - 1)
        return np.asarray(base[pos] == hashes)


def ids_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return hash_strings(pc.fill_null(ids, ""))
