"""The query engine: DuckDB over the selected segments plus the in-memory tail, under limits.

A query sees one relation, ``logs`` = ``read_parquet([selected files], union_by_name=true)``
``UNION ALL BY NAME`` the tail (an Arrow table registered zero-copy), both cut to the time range.
Segments are selected from the catalog by time range and then by the token index (a needle the
query requires that a segment's Bloom filter does not contain rules the segment out). Limits: a
timer interrupts the connection after ``timeout_secs`` (``QueryTimeout``), ``cancel()`` interrupts
it from another thread (``QueryCancelled``), ``memory_limit`` is DuckDB's, ``max_rows`` truncates.
User SQL runs on its own sandboxed database: external access is off except for the selected
files and the configuration is locked, so it cannot read other files or change the limits.
Compiled hunting queries (trusted SQL) run on a cursor of the store's shared database, which
saves the ~30-60 ms a new database costs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kubetrail.errors import QueryCancelled, QueryError, QueryTimeout
from kubetrail.store.catalog import SegmentInfo
from kubetrail.store.config import QueryLimits
from kubetrail.store.segments import ID_PREFIX_COLUMN, event_id_sql
from kubetrail.store.tokens import BloomFilter

__all__ = ["QueryRun", "ScanSet", "prune_segments", "sql_literal"]


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@functools.lru_cache(maxsize=8192)
def _has_id_prefix(path: str) -> bool:
    """Whether a segment stores ``event.id`` split (segments are immutable, so a path's answer holds)."""
    try:
        return ID_PREFIX_COLUMN in pq.read_schema(path).names
    except (OSError, pa.ArrowException):
        return False  # unreadable: read_parquet reports it with the file name


def segment_scan_sql(files: Sequence[str], where: str = "", union: bool = True) -> str:
    """``SELECT`` over segment files that gives back ``event.id`` whole (segments may store it split).

    Every reader of segment files goes through this (the engine, retro-hunts), so none sees the
    storage form of the id. ``union``: the files may differ in schema (read by name).
    """
    listed = ", ".join(sql_literal(f) for f in files)
    by_name = "union_by_name = true, " if union else ""
    # a schema group is homogeneous: its first file tells; a by-name union has the column if any has
    split = any(map(_has_id_prefix, files)) if union else _has_id_prefix(files[0])
    select = event_id_sql() if split else "*"
    return f"SELECT {select} FROM read_parquet([{listed}], {by_name}hive_partitioning = false){where}"


def _ts(ns: int) -> str:
    return f"make_timestamp_ns({int(ns)})::TIMESTAMPTZ_NS"


def prune_segments(
    segments: Sequence[SegmentInfo],
    needle_hashes: np.ndarray,
    bloom_of: Callable[[str], BloomFilter | None],
) -> list[SegmentInfo]:
    """Segments whose token filter may contain every needle (no filter = keep)."""
    if len(needle_hashes) == 0:
        return list(segments)
    kept = []
    for seg in segments:
        bloom = bloom_of(seg.id)
        if bloom is None or bloom.contains_all(needle_hashes):
            kept.append(seg)
    return kept


@dataclass
class ScanSet:
    """What one query reads: segment files, a tail snapshot and the time range [since, until)."""

    files: list[str]
    tail: pa.Table
    since_ns: int | None = None
    until_ns: int | None = None
    segments_total: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    schema_fps: list[str | None] = field(default_factory=list)

    def file_groups(self) -> list[tuple[list[str], bool]]:
        """(files, needs union_by_name) per schema: one group when every file has the same schema."""
        fps = self.schema_fps or [None] * len(self.files)
        groups: dict[str | None, list[str]] = {}
        for f, fp in zip(self.files, fps, strict=True):
            groups.setdefault(fp, []).append(f)
        return [(files, fp is None) for fp, files in groups.items()]

    def time_filter(self) -> str:
        conds = []
        if self.since_ns is not None:
            conds.append(f'"@timestamp" >= {_ts(self.since_ns)}')
        if self.until_ns is not None:
            conds.append(f'"@timestamp" < {_ts(self.until_ns)}')
        return (" WHERE " + " AND ".join(conds)) if conds else ""


class QueryRun:
    """One DuckDB connection prepared with the ``logs`` view; run once, cancel from anywhere."""

    def __init__(
        self,
        scan: ScanSet,
        limits: QueryLimits,
        relation: str = "logs",
        parent: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        """``parent``: a shared database to open a cheap cursor on (trusted, compiled SQL only);
        without it the query gets its own sandboxed database (user SQL)."""
        self.scan = scan
        self.limits = limits
        sandbox = parent is None
        if parent is not None:
            self.con = parent.cursor()
        else:
            self.con = duckdb.connect(config={"memory_limit": limits.memory_limit})
            if limits.threads:
                self.con.execute(f"SET threads = {int(limits.threads)}")
        self.con.register(f"__tail_{relation}", scan.tail)
        where = scan.time_filter()
        parts = []
        for files, union in scan.file_groups():
            parts.append(segment_scan_sql(files, where, union=union))
        parts.append(f'SELECT * FROM "__tail_{relation}"{where}')
        self.con.execute(f'CREATE OR REPLACE TEMP VIEW "{relation}" AS ' + " UNION ALL BY NAME ".join(parts))
        if sandbox:
            # The query may read the selected segments and nothing else on disk or the network.
            if scan.files:
                self.con.execute(f"SET allowed_paths = [{', '.join(sql_literal(f) for f in scan.files)}]")
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
        self._timed_out = False
        self._cancelled = False
        self._timer: threading.Timer | None = None
        self.started = 0.0

    def cancel(self) -> None:
        """Stop the running query; the runner raises ``QueryCancelled``."""
        self._cancelled = True
        self.con.interrupt()

    def progress(self) -> float:
        """Percent done of the running query (-1 when unknown)."""
        try:
            return float(self.con.query_progress())
        except duckdb.Error:
            return -1.0

    def _on_timeout(self) -> None:
        self._timed_out = True
        self.con.interrupt()

    def _start_timer(self, timeout_secs: float | None) -> None:
        self.started = time.monotonic()
        self._timer = threading.Timer(timeout_secs or self.limits.timeout_secs, self._on_timeout)
        self._timer.daemon = True
        self._timer.start()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _translate(self, exc: duckdb.Error, sql: str) -> QueryError:
        if isinstance(exc, duckdb.InterruptException) or self._timed_out or self._cancelled:
            if self._timed_out:
                secs = time.monotonic() - self.started
                return QueryTimeout(f"query timed out after {secs:.1f}s (limit {self.limits.timeout_secs}s)")
            return QueryCancelled("query cancelled")
        if isinstance(exc, duckdb.OutOfMemoryException):
            return QueryError(f"query exceeded the memory limit {self.limits.memory_limit}: {exc}")
        return QueryError(f"query failed: {exc}", query=sql)

    def table(
        self,
        sql: str,
        max_rows: int | None = None,
        timeout_secs: float | None = None,
        params: Sequence[object] = (),
    ) -> pa.Table:
        """Run ``sql`` and return at most ``max_rows`` rows; ``.schema.metadata`` says truncated."""
        cap = min(max_rows or self.limits.max_rows, self.limits.max_rows)
        self._start_timer(timeout_secs)
        try:
            wrapped = f"SELECT * FROM ({sql}) AS __q LIMIT {cap + 1}"
            result = self.con.sql(wrapped, params=list(params) or None).to_arrow_table()
        except duckdb.Error as exc:
            raise self._translate(exc, sql) from None
        finally:
            self._stop_timer()
        truncated = result.num_rows > cap
        if truncated:
            result = result.slice(0, cap)
        return result.replace_schema_metadata({b"kubetrail.truncated": b"1" if truncated else b"0"})

    def batches(
        self,
        sql: str,
        max_rows: int | None = None,
        timeout_secs: float | None = None,
        batch_rows: int = 8192,
        params: Sequence[object] = (),
    ) -> Iterator[pa.RecordBatch]:
        """Stream the result (for NDJSON responses); the time limit covers the whole iteration."""
        cap = min(max_rows or self.limits.max_rows, self.limits.max_rows)
        self._start_timer(timeout_secs)
        try:
            wrapped = f"SELECT * FROM ({sql}) AS __q LIMIT {cap}"
            reader = self.con.sql(wrapped, params=list(params) or None).to_arrow_reader(batch_rows)
            yield from reader
        except duckdb.Error as exc:
            raise self._translate(exc, sql) from None
        finally:
            self._stop_timer()

    def close(self) -> None:
        self._stop_timer()
        self.con.close()
