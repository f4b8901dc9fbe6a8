"""The query engine: DuckDB over the selected segments plus the in-memory tail, under limits.

A query sees one relation, ``logs`` = ``read_parquet([selected files], union_by_name=true)``
``UNION ALL BY NAME`` the tail (an Arrow table registered zero-copy), both cut to the time range
and, for a namespace-scoped reader (a viewer token), to its namespaces.
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
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kubetrail.errors import QueryCancelled, QueryError, QueryTimeout
from kubetrail.store.catalog import SegmentInfo
from kubetrail.store.codec import CODEC_COLUMN, decode, decode_sql
from kubetrail.store.config import QueryLimits
from kubetrail.store.tokens import TokenIndex

__all__ = ["QueryRun", "ScanSet", "merge_ranged_files", "prune_segments", "sql_literal", "union_ranges"]


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@functools.lru_cache(maxsize=8192)
def _stored_names(path: str) -> tuple[str, ...]:
    """A segment's stored column names (segments are immutable, so a path's answer holds)."""
    try:
        return tuple(pq.read_schema(path).names)
    except (OSError, pa.ArrowException):
        return ()  # unreadable: read_parquet reports it with the file name


def segment_scan_sql(
    files: Sequence[str],
    where: str = "",
    union: bool = True,
    row_ranges: Sequence[tuple[int, int]] | None = None,
    decoded: Collection[str] | None = None,
) -> str:
    """``SELECT`` over segment files that gives back the rows as the pipeline produced them.

    Every reader of segment files goes through this (the engine, retro-hunts), so none sees the
    stored form (``kubetrail.store.codec``). ``union``: the files may differ in schema (read by name).
    ``row_ranges``: read only these inclusive ``file_row_number`` ranges of every file listed (the
    token index's matching blocks); DuckDB then skips the other row groups. ``decoded``: the
    rewritten columns the query reads (None: all); the others keep their stored form and
    ``_kt.codec`` for ``codec.decode`` on the result.
    """
    listed = ", ".join(sql_literal(f) for f in files)
    by_name = "union_by_name = true, " if union else ""
    # a schema group is homogeneous: its first file tells; a by-name union has every file's columns
    names = dict.fromkeys(c for f in files for c in _stored_names(f)) if union else _stored_names(files[0])
    select = decode_sql(names, ("file_row_number",) if row_ranges else (), only=decoded)
    options = f"{by_name}hive_partitioning = false" + (", file_row_number = true" if row_ranges else "")
    if row_ranges:
        in_blocks = " OR ".join(f"file_row_number BETWEEN {int(a)} AND {int(b)}" for a, b in row_ranges)
        where = f"{where} AND ({in_blocks})" if where else f" WHERE ({in_blocks})"
    return f"SELECT {select} FROM read_parquet([{listed}], {options}){where}"


def _ts(ns: int) -> str:
    return f"make_timestamp_ns({int(ns)})::TIMESTAMPTZ_NS"


# Above this share of a segment's rows, reading the matching blocks alone gains nothing.
_MAX_BLOCK_SHARE = 0.5


def prune_segments(
    segments: Sequence[SegmentInfo],
    needle_hashes: np.ndarray,
    index_of: Callable[[str], TokenIndex | None],
) -> list[tuple[SegmentInfo, list[tuple[int, int]] | None]]:
    """Segments whose token index may hold every needle, each with the row ranges to read
    (None: the whole segment; no index = keep whole)."""
    if len(needle_hashes) == 0:
        return [(seg, None) for seg in segments]
    kept: list[tuple[SegmentInfo, list[tuple[int, int]] | None]] = []
    for seg in segments:
        index = index_of(seg.id)
        if index is None:
            kept.append((seg, None))
            continue
        matched = index.matching_blocks(needle_hashes)
        if not matched.any():
            continue
        whole = index.block_rows <= 0 or matched.mean() > _MAX_BLOCK_SHARE
        kept.append((seg, None if whole else index.row_ranges(matched)))
    return kept


# What planning one more scan costs, in rows read (measured at 55M rows: ~10 ms to plan a scan, ~4 ms
# to read a 16k-row block of every column).
SCAN_COST_ROWS = 3 * 16384
# How many of the latest scans a file may join (files come in order of their ranges).
_MERGE_CANDIDATES = 8


def union_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive row ranges merged into disjoint, sorted ones."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _rows(ranges: Sequence[tuple[int, int]]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def merge_ranged_files(
    ranged: dict[str, list[tuple[int, int]]], scan_cost_rows: int = SCAN_COST_ROWS
) -> list[tuple[list[str], list[tuple[int, int]]]]:
    """Files of one schema with the row ranges each must read, grouped into scans.

    A scan reads the union of its files' ranges from every one of them (a ``file_row_number``
    filter is the same for all files of a scan), so a file joins the scan where that adds the
    fewest rows read, or starts its own when another scan (``scan_cost_rows``) is cheaper.
    Files that need the same blocks (a pod's place in the sort order is stable hour to hour)
    always share a scan. Reading extra blocks never changes an answer: the query's own
    conditions still apply to every row. Files are taken in order of their ranges, so only the
    last few scans are candidates: planning stays linear in the number of files (720 hourly
    segments of a month, blocks at random: 13 ms, not 0.57 s)."""
    scans: list[tuple[list[str], list[tuple[int, int]]]] = []
    for file, ranges in sorted(ranged.items(), key=lambda item: (item[1], item[0])):
        best, best_cost, best_union = None, scan_cost_rows + _rows(ranges), union_ranges(ranges)
        for i in range(max(0, len(scans) - _MERGE_CANDIDATES), len(scans)):
            files, union = scans[i]
            grown = union_ranges([*union, *ranges])
            cost = (len(files) + 1) * _rows(grown) - len(files) * _rows(union)
            if cost < best_cost:
                best, best_cost, best_union = i, cost, grown
        if best is None:
            scans.append(([file], best_union))
        else:
            scans[best] = ([*scans[best][0], file], best_union)
    return scans


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
    # file -> the only row ranges a query needs from it (the token index's matching blocks)
    row_ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # the only ``kubernetes.namespace`` values the reader may see (a viewer token); None: all
    namespaces: tuple[str, ...] | None = None

    def file_groups(self) -> list[tuple[list[str], bool]]:
        """(files, needs union_by_name) per schema: one group when every file has the same schema.

        Files in ``row_ranges`` are not part of any group: see :meth:`ranged_scans`."""
        groups: dict[str | None, list[str]] = {}
        for f, fp in self._fingerprints():
            if f not in self.row_ranges:
                groups.setdefault(fp, []).append(f)
        return [(files, fp is None) for fp, files in groups.items()]

    def ranged_scans(self) -> list[tuple[list[str], list[tuple[int, int]]]]:
        """The files read by block ranges, as scans: (files of one schema, the ranges each reads).

        Planning a scan costs DuckDB as much as reading a few blocks, and a scan of one file more
        than a scan of several (DuckDB gathers a single file's column statistics for its optimizer:
        measured at 55M rows, 24 single-file scans took 300 ms to plan, one 24-file scan 8 ms). So
        files of one schema share a scan, reading the union of their ranges, where that reads fewer
        extra blocks than another scan would cost (``merge_ranged_files``)."""
        by_schema: dict[str | None, dict[str, list[tuple[int, int]]]] = {}
        for f, fp in self._fingerprints():
            if f in self.row_ranges:
                by_schema.setdefault(fp, {})[f] = self.row_ranges[f]
        scans = []
        for fp, ranged in by_schema.items():
            if fp is None:  # schema unknown: each file is read by itself
                scans += [([f], r) for f, r in ranged.items()]
            else:
                scans += merge_ranged_files(ranged)
        return scans

    def _fingerprints(self) -> Iterator[tuple[str, str | None]]:
        return zip(self.files, self.schema_fps or [None] * len(self.files), strict=True)

    def time_conditions(self) -> list[str]:
        conds = []
        if self.since_ns is not None:
            conds.append(f'"@timestamp" >= {_ts(self.since_ns)}')
        if self.until_ns is not None:
            conds.append(f'"@timestamp" < {_ts(self.until_ns)}')
        return conds

    def time_filter(self) -> str:
        conds = self.time_conditions()
        return (" WHERE " + " AND ".join(conds)) if conds else ""

    def namespace_condition(self) -> str | None:
        """The reader's namespace scope as SQL; a null namespace (node logs) is never in scope, and
        an empty scope matches nothing (never everything)."""
        if self.namespaces is None:
            return None
        if not self.namespaces:
            return "FALSE"
        return f'"kubernetes.namespace" IN ({", ".join(sql_literal(ns) for ns in self.namespaces)})'

    def row_filter(self) -> str:
        """``" WHERE ..."`` (or empty) for every part of the relation: the time range and the scope.

        The scope is part of the relation itself, so no query shape (pipes, aggregations, user
        SQL) can read rows outside it."""
        conds = self.time_conditions()
        scope = self.namespace_condition()
        if scope is not None:
            conds.append(scope)
        return (" WHERE " + " AND ".join(conds)) if conds else ""


class QueryRun:
    """One DuckDB connection prepared with the ``logs`` view; run once, cancel from anywhere."""

    def __init__(
        self,
        scan: ScanSet,
        limits: QueryLimits,
        relation: str = "logs",
        parent: duckdb.DuckDBPyConnection | None = None,
        decoded: Collection[str] | None = None,
    ) -> None:
        """``parent``: a shared database to open a cheap cursor on (trusted, compiled SQL only);
        without it the query gets its own sandboxed database (user SQL). ``decoded``: the
        rewritten columns (``codec``) the query reads; None: all. Whole-event results get the
        others decoded after the query (only their rows, only the rewrites they hold)."""
        self.scan = scan
        self.limits = limits
        sandbox = parent is None
        if parent is not None:
            self.con = parent.cursor()
        else:
            self.con = duckdb.connect(config={"memory_limit": limits.memory_limit})
            if limits.threads:
                self.con.execute(f"SET threads = {int(limits.threads)}")
        # registered even when empty: retro-hunts (``detect.hunt.store_relations``) read it by name
        self.con.register(f"__tail_{relation}", scan.tail)
        where = scan.row_filter()
        parts = []
        for files, union in scan.file_groups():
            parts.append(segment_scan_sql(files, where, union=union, decoded=decoded))
        for files, ranges in scan.ranged_scans():
            parts.append(segment_scan_sql(files, where, union=False, row_ranges=ranges, decoded=decoded))
        if scan.tail.num_rows or not parts:
            parts.append(f'SELECT * FROM "__tail_{relation}"{where}')
        # A CTE, not a temporary view: creating a view writes the catalog (3-6 ms a query, measured).
        self.relation = relation
        self.relation_sql = " UNION ALL BY NAME ".join(parts)
        self._with = f'WITH "{relation}" AS NOT MATERIALIZED ({self.relation_sql}) '
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

    def inline_relation(self) -> str:
        """The relation as a FROM item, for SQL compiled against it: planning a subquery costs
        about 3 ms less than the same text as a CTE (measured with ``EXPLAIN``)."""
        return f'({self.relation_sql}) AS "{self.relation}"'

    def cap(self, max_rows: int | None) -> int:
        """The row cap a query gets: the caller's, never above ``limits.max_rows``."""
        return min(max_rows or self.limits.max_rows, self.limits.max_rows)

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
        inline: bool = False,
    ) -> pa.Table:
        """Run ``sql`` and return at most ``max_rows`` rows; ``.schema.metadata`` says truncated.

        ``inline``: ``sql`` already reads :meth:`inline_relation` and stops after ``cap + 1`` rows."""
        cap = self.cap(max_rows)
        self._start_timer(timeout_secs)
        try:
            wrapped = sql if inline else f"{self._with}SELECT * FROM ({sql}) AS __q LIMIT {cap + 1}"
            result = self.con.sql(wrapped, params=list(params) or None).to_arrow_table()
        except duckdb.Error as exc:
            raise self._translate(exc, sql) from None
        finally:
            self._stop_timer()
        truncated = result.num_rows > cap
        if truncated:
            result = result.slice(0, cap)
        if CODEC_COLUMN in result.column_names:
            result = decode(result)
        return result.replace_schema_metadata({b"kubetrail.truncated": b"1" if truncated else b"0"})

    def batches(
        self,
        sql: str,
        max_rows: int | None = None,
        timeout_secs: float | None = None,
        batch_rows: int = 8192,
        params: Sequence[object] = (),
        inline: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Stream at most ``max_rows`` rows (for NDJSON responses); the time limit covers the whole
        iteration. ``inline`` as in :meth:`table`."""
        cap = self.cap(max_rows)
        self._start_timer(timeout_secs)
        try:
            wrapped = sql if inline else f"{self._with}SELECT * FROM ({sql}) AS __q LIMIT {cap}"
            reader = self.con.sql(wrapped, params=list(params) or None).to_arrow_reader(batch_rows)
            left = cap
            for batch in reader:
                if CODEC_COLUMN in batch.schema.names:
                    yield from decode(pa.Table.from_batches([batch.slice(0, left)])).to_batches()
                else:
                    yield batch.slice(0, left)
                left -= min(left, batch.num_rows)
                if left == 0:
                    break
        except duckdb.Error as exc:
            raise self._translate(exc, sql) from None
        finally:
            self._stop_timer()

    def close(self) -> None:
        self._stop_timer()
        self.con.close()
