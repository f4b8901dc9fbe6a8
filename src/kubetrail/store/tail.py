"""The in-memory tail: appended rows not yet in a segment, searchable at once.

Why: writing a Parquet segment per small batch would make thousands of tiny files and a slow
catalog; holding rows in Arrow until ``flush_max_rows`` or ``flush_max_age_secs`` makes them
searchable immediately (the engine queries the tail with the segments) and segments large.
The tail is bounded by the flush thresholds; the server's WAL makes it durable.
"""

from __future__ import annotations

import threading
import time

import pyarrow as pa

from kubetrail.schema import SCHEMA

__all__ = ["Tail"]


class Tail:
    """A list of full-schema batches, with the time the oldest arrived."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: list[pa.RecordBatch] = []
        self._rows = 0
        self._bytes = 0
        self._oldest: float | None = None

    def append(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        with self._lock:
            self._batches.append(batch)
            self._rows += batch.num_rows
            self._bytes += batch.nbytes
            if self._oldest is None:
                self._oldest = time.monotonic()

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def nbytes(self) -> int:
        return self._bytes

    def age_secs(self) -> float:
        oldest = self._oldest
        return 0.0 if oldest is None else time.monotonic() - oldest

    def snapshot(self) -> tuple[pa.Table, int]:
        """The rows now in the tail (zero-copy) and a marker for ``drop_through``."""
        with self._lock:
            batches = list(self._batches)
        return pa.Table.from_batches(batches, schema=SCHEMA), len(batches)

    def drop_through(self, marker: int) -> None:
        """Forget the first ``marker`` batches (they are in segments now)."""
        with self._lock:
            gone = self._batches[:marker]
            self._batches = self._batches[marker:]
            self._rows -= sum(b.num_rows for b in gone)
            self._bytes -= sum(b.nbytes for b in gone)
            self._oldest = time.monotonic() if self._batches else None
