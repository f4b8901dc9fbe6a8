"""``Store``: the embedded store the server pipeline appends to and hunters search.

    store = Store(path, StoreConfig())
    store.append(batch)                  # full-schema batches; duplicates by event.id are dropped
    store.search("namespace:prod AND 10.1.2.3", since="24h")   # segments + tail, pruned, limited
    store.sql('SELECT count(*) FROM logs')                       # read-only SQL over the same view
    store.flush(); store.close()

Appended rows are searchable at once (the tail); ``maybe_flush()`` (called by ``append`` and by
the server's timer) turns the tail into one segment per hour when it is large or old enough.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.errors import QueryError, StorageError
from kubetrail.schema import SCHEMA
from kubetrail.store.catalog import Catalog, SegmentInfo
from kubetrail.store.codec import query_reads
from kubetrail.store.config import StoreConfig
from kubetrail.store.dedup import SeenSets, first_occurrences, ids_hashes
from kubetrail.store.engine import QueryRun, ScanSet, prune_segments, sql_literal
from kubetrail.store.readonly import query_api, validate_read_only
from kubetrail.store.segments import HOUR_NS, hour_of, partition_name, read_segment, write_segment
from kubetrail.store.tail import Tail
from kubetrail.store.times import to_ns
from kubetrail.store.tokens import TokenIndex, needle_hashes

__all__ = ["CompiledLike", "SearchResult", "Store", "open_shared", "to_ns"]


class CompiledLike(Protocol):
    """What the engine needs from ``kubetrail.query.CompiledQuery``."""

    sql: str
    needles: Sequence[tuple[str, str]]
    params: Sequence[object]


class SearchResult:
    """Rows of a search plus what it cost."""

    def __init__(self, table: pa.Table, scanned: int, total: int, elapsed: float) -> None:
        self.table = table
        self.segments_scanned = scanned
        self.segments_total = total
        self.elapsed_secs = elapsed

    @property
    def truncated(self) -> bool:
        meta = self.table.schema.metadata or {}
        return meta.get(b"kubetrail.truncated") == b"1"


class Store:
    """Segments + catalog + tail under one root directory."""

    def __init__(self, path: str | Path, config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        Path(path).mkdir(parents=True, exist_ok=True)
        self.root = Path(path).resolve()  # absolute: the query sandbox allows files under it
        self.catalog = Catalog(self.root / "catalog.db")
        self.tail = Tail()
        self._append_lock = threading.Lock()  # appends and flushes are serialized
        self._view_lock = threading.Lock()  # catalog+tail snapshots are consistent
        self._blooms: dict[str, TokenIndex | None] = {}
        self._seen = SeenSets(self.config.dedup_cache_hours, self._load_hour_hashes)
        self._archive: Any = None
        self._last_retention = self._last_compaction = time.monotonic()
        self._maintenance_lock = threading.Lock()
        self._duck: Any = None  # shared DuckDB database for trusted queries (cursors per query)
        self.closed = False
        self.duplicates_dropped = 0

    # -- writing ----------------------------------------------------------------------------
    def append(self, batch: pa.RecordBatch | pa.Table) -> int:
        """Store the rows whose ``event.id`` is new; returns how many were stored."""
        if self.closed:
            raise StorageError("store is closed", path=str(self.root))
        if isinstance(batch, pa.Table):
            batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else None
            if batch is None:
                return 0
        if batch.num_rows == 0:
            return 0
        if batch.schema != SCHEMA:
            try:
                batch = batch.select(SCHEMA.names).cast(SCHEMA)
            except (KeyError, pa.ArrowInvalid, ValueError) as exc:
                raise StorageError(f"batch does not match the event schema: {exc}") from None
        with self._append_lock:
            batch = self._fill_timestamps(batch)
            batch = self._dedup(batch)
            if batch.num_rows:
                self.tail.append(batch)
            stored: int = batch.num_rows
        self.maybe_flush()
        return stored

    def _fill_timestamps(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        ts = batch.column("@timestamp")
        if ts.null_count == 0:
            return batch
        now = pa.scalar(time.time_ns(), pa.int64()).cast(SCHEMA.field("@timestamp").type)
        filled = pc.coalesce(ts, batch.column("event.ingested"), now)
        return batch.set_column(SCHEMA.get_field_index("@timestamp"), "@timestamp", filled)

    def _dedup(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        ids = batch.column("event.id")
        hashes = ids_hashes(ids)
        keep = first_occurrences(ids, hashes)
        valid = ids.is_valid().to_numpy(zero_copy_only=False)
        hours = hour_of(batch.column("@timestamp"))
        for hour in np.unique(hours):
            rows = np.flatnonzero((hours == hour) & valid & keep)
            if len(rows) == 0:
                continue
            candidates = rows[self._seen.maybe_seen(int(hour), hashes[rows])]
            if len(candidates):
                dup_ids = self._confirm_stored(int(hour), ids.take(pa.array(candidates)))
                if dup_ids:
                    is_dup = pc.is_in(ids.take(pa.array(candidates)), value_set=pa.array(sorted(dup_ids)))
                    keep[candidates[is_dup.to_numpy(zero_copy_only=False)]] = False
            self._seen.add(int(hour), hashes[rows[keep[rows]]])
        dropped = int((~keep).sum())
        if dropped:
            self.duplicates_dropped += dropped
            return batch.filter(pa.array(keep))
        return batch

    def _hour_files(self, hour: int) -> list[str]:
        return [str(self.root / s.path) for s in self.catalog.segments(partition=partition_name(hour))]

    def _load_hour_hashes(self, hour: int) -> np.ndarray:
        parts = [ids_hashes(read_segment(f, ["event.id"]).column(0)) for f in self._hour_files(hour)]
        tail, _ = self.tail.snapshot()
        if tail.num_rows:
            in_hour = pc.equal(pc.divide(pc.cast(tail.column("@timestamp"), pa.int64()), HOUR_NS), hour)
            parts.append(ids_hashes(tail.column("event.id").filter(in_hour)))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    def _confirm_stored(self, hour: int, candidates: pa.Array) -> set[str]:
        """Which candidate ids are really stored (tail or the hour's segments)."""
        found: set[str] = set()
        tail, _ = self.tail.snapshot()
        if tail.num_rows:
            tail_ids = tail.column("event.id")
            found |= set(tail_ids.filter(pc.is_in(tail_ids, value_set=candidates)).to_pylist())
        for f in self._hour_files(hour):
            seg_ids = read_segment(f, ["event.id"]).column(0)
            found |= set(seg_ids.filter(pc.is_in(seg_ids, value_set=candidates)).to_pylist())
        return found

    def maybe_flush(self) -> list[SegmentInfo]:
        """Flush when the tail is large or old enough (cheap to call often)."""
        cfg = self.config
        if self.tail.rows >= cfg.flush_max_rows or (
            self.tail.rows and self.tail.age_secs() >= cfg.flush_max_age_secs
        ):
            return self.flush()
        return []

    def flush(self) -> list[SegmentInfo]:
        """Write the tail as one segment per hour and register them atomically with the catalog.

        Also starts due maintenance (retention, compaction) in the background, so the server's
        periodic flush keeps an idle store's retention enforced too.
        """
        try:
            return self._flush()
        finally:
            self._maybe_start_maintenance()

    def _flush(self) -> list[SegmentInfo]:
        with self._append_lock:
            table, marker = self.tail.snapshot()
            if table.num_rows == 0:
                return []
            hours = hour_of(table.column("@timestamp"))
            written = []
            for hour in np.unique(hours):
                part = table.filter(pa.array(hours == hour))
                written.append(self.write_hour_segment(part, int(hour)))
            with self._view_lock:
                with self.catalog.transaction() as db:
                    for info, bloom in written:
                        self.catalog.insert_segment(db, info, bloom)
                self.tail.drop_through(marker)
        return [info for info, _ in written]

    def write_hour_segment(
        self, table: pa.Table, hour: int, merged: bool = False
    ) -> tuple[SegmentInfo, TokenIndex]:
        """Sort, write and index rows of one hour with the configured layout (not yet in the catalog).

        ``merged``: a compaction or retention rewrite, written with the compaction zstd levels."""
        cfg = self.config
        merge = cfg.compaction
        level, text_level = (merge.zstd_level, merge.text_zstd_level) if merged else (cfg.zstd_level, None)
        try:
            info, index = write_segment(
                table,
                self.root,
                hour,
                cfg.sort_by,
                level,
                cfg.row_group_rows,
                cfg.bloom_bits_per_key,
                text_level,
                index_block_rows=cfg.index_block_rows,
                encoded=cfg.codec,
            )
        except OSError as exc:
            raise StorageError(f"cannot write segment: {exc}", path=str(self.root)) from None
        self._blooms[info.id] = index
        return info, index

    # -- reading ----------------------------------------------------------------------------
    def bloom(self, segment_id: str) -> TokenIndex | None:
        if segment_id not in self._blooms:
            self._blooms[segment_id] = self.catalog.bloom(segment_id)
        return self._blooms[segment_id]

    def scan_set(
        self,
        since: Any = None,
        until: Any = None,
        needles: Sequence[tuple[str, str]] = (),
        include_archive: bool = False,
        substring_needles: bool = False,
        prune: bool = True,
        namespaces: Sequence[str] | None = None,
    ) -> ScanSet:
        """The files and tail rows a query over [since, until) has to read.

        ``namespaces``: the reader sees only rows of these namespaces (a viewer token; empty: none;
        None: all); segments the catalog says hold none of them are not read."""
        since_ns, until_ns = to_ns(since), to_ns(until)
        tiers = ("hot", "archive") if include_archive else ("hot",)
        with self._view_lock:
            segments = self.catalog.segments(since_ns, until_ns, tiers)
            tail, _ = self.tail.snapshot()
        total = len(segments)
        scope = None if namespaces is None else tuple(sorted(set(namespaces)))
        if scope is not None:  # a segment's list is None when unknown or too long: keep it
            allowed = set(scope)
            segments = [s for s in segments if s.namespaces is None or not allowed.isdisjoint(s.namespaces)]
        hashes = needle_hashes(needles if prune else (), substring_needles)  # none: every segment whole
        kept = prune_segments(segments, hashes, self.bloom)
        files = []
        row_ranges: dict[str, list[tuple[int, int]]] = {}
        for seg, ranges in kept:
            if seg.tier == "archive":
                files.append(str(self.archive.local_copy(seg)))
            else:
                files.append(str(self.root / seg.path))
            if ranges is not None:
                row_ranges[files[-1]] = ranges
        fps = [seg.schema_fp for seg, _ in kept]
        return ScanSet(
            files, tail, since_ns, until_ns, total, schema_fps=fps, row_ranges=row_ranges, namespaces=scope
        )

    def open_query(
        self, scan: ScanSet, trusted: bool = True, decoded: Collection[str] | None = None
    ) -> QueryRun:
        """A query over ``scan`` on a cursor of the store's sandboxed DuckDB database.

        The database is created once: file access limited to the store root and the archive
        cache, configuration locked (so no query can lift the memory limit or read other files).
        ``trusted`` is kept for callers; every query runs in the same sandbox. ``decoded``: the
        stored-form columns the query reads (``QueryRun``); None: all.
        """
        with self._view_lock:
            if self._duck is None:
                self._duck = self._sandboxed_database()
        return QueryRun(scan, self.config.limits, parent=self._duck, decoded=decoded)

    def _sandboxed_database(self) -> Any:
        import duckdb

        limits = self.config.limits
        db = duckdb.connect(config={"memory_limit": limits.memory_limit})
        if limits.threads:
            db.execute(f"SET threads = {int(limits.threads)}")
        dirs = [str(self.root) + "/"]
        cache = self.config.archive.cache_dir
        if cache is not None:
            dirs.append(str(Path(cache).resolve()) + "/")
        # segments are immutable and never rewritten under the same name, so footers can be cached;
        db.execute("SET GLOBAL parquet_metadata_cache = true")  # GLOBAL: cursors do not inherit a SET
        db.execute(f"SET allowed_directories = [{', '.join(sql_literal(d) for d in dirs)}]")
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")
        return db

    def compile(
        self, query: str | CompiledLike | None, where: str | None = None
    ) -> tuple[str, list[Any], list[object]]:
        """(SQL over ``logs``, needles, parameters) for a query text, a compiled query or a WHERE."""
        if query is None or (isinstance(query, str) and query.strip() in ("", "*") and not where):
            cond = f" WHERE {where}" if where else ""
            return f'SELECT * FROM logs{cond} ORDER BY "@timestamp" DESC', [], []
        compiled: CompiledLike
        if isinstance(query, str):
            compile_query = query_api("compile_query")
            if compile_query is None:
                raise QueryError("the query language is not installed; use where= or sql()")
            compiled = compile_query(query)
        else:
            compiled = query
        return str(compiled.sql), list(compiled.needles), list(getattr(compiled, "params", ()) or ())

    def search(
        self,
        query: str | CompiledLike | None = None,
        since: Any = None,
        until: Any = None,
        limit: int | None = None,
        timeout: float | None = None,
        include_archive: bool = False,
        where: str | None = None,
        needles: Sequence[tuple[str, str]] = (),
        prune: bool = True,
        namespaces: Sequence[str] | None = None,
    ) -> SearchResult:
        """Run a search over segments + tail; raises ``QueryError`` (and its timeout subclasses).

        ``namespaces``: only rows of these namespaces exist for this search (see ``scan_set``)."""
        started = time.monotonic()
        run, sql, params, inline = self._prepare(
            query, where, since, until, needles, include_archive, prune, namespaces, limit
        )
        scan = run.scan
        try:
            table = run.table(sql, max_rows=limit, timeout_secs=timeout, params=params, inline=inline)
        finally:
            run.close()
        return SearchResult(table, len(scan.files), scan.segments_total, time.monotonic() - started)

    def search_batches(
        self,
        query: str | CompiledLike | None = None,
        since: Any = None,
        until: Any = None,
        limit: int | None = None,
        timeout: float | None = None,
        include_archive: bool = False,
        namespaces: Sequence[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream a search's rows batch by batch (the HTTP API's NDJSON); ``namespaces`` as in ``search``."""
        run, sql, params, inline = self._prepare(
            query, None, since, until, (), include_archive, True, namespaces, limit
        )
        try:
            yield from run.batches(sql, max_rows=limit, timeout_secs=timeout, params=params, inline=inline)
        finally:
            run.close()

    def _prepare(
        self,
        query: str | CompiledLike | None,
        where: str | None,
        since: Any,
        until: Any,
        needles: Sequence[tuple[str, str]],
        include_archive: bool,
        prune: bool,
        namespaces: Sequence[str] | None,
        limit: int | None,
    ) -> tuple[QueryRun, str, list[Any], bool]:
        """Compile, prune and open a search: (run, SQL, parameters, whether the SQL is inline).

        Query text is compiled a second time once the scan is known, reading its relation inline
        and stopping after the row cap + 1 (less for DuckDB to plan than a CTE and a wrapper)."""
        text = query if isinstance(query, str) and query.strip() not in ("", "*") else None
        if text is not None:
            query = self.compile_text(text)
        sql, compiled_needles, params = self.compile(query, where)
        since, until = self.time_range(query, since, until)
        all_needles = [*compiled_needles, *needles]
        scan = self.scan_set(since, until, all_needles, include_archive, prune=prune, namespaces=namespaces)
        run = self.open_query(scan, decoded=query_reads(query, sql))
        inline = text is not None and not params
        if text is not None and inline:
            sql = self.compile_text(text, relation=run.inline_relation(), limit=run.cap(limit) + 1).sql
        return run, sql, params, inline

    @staticmethod
    def compile_text(text: str, **options: Any) -> CompiledLike:
        """Compile a hunting query (``options``: ``compile_query``'s, e.g. ``relation``, ``limit``)."""
        compile_query = query_api("compile_query")
        if compile_query is None:
            raise QueryError("the query language is not installed; use where= or sql()")
        compiled: CompiledLike = compile_query(text, **options)
        return compiled

    @staticmethod
    def time_range(query: Any, since: Any, until: Any) -> tuple[int | None, int | None]:
        """Intersect the caller's range with the one the query itself states (inclusive end)."""
        lo, hi = to_ns(since), to_ns(until)
        q_range = getattr(query, "time_range", None)
        if q_range is not None:
            q_lo = to_ns(getattr(q_range, "start", None))
            q_hi = to_ns(getattr(q_range, "end", None))
            q_hi = None if q_hi is None else q_hi + 1
            if q_lo is not None:
                lo = q_lo if lo is None else max(lo, q_lo)
            if q_hi is not None:
                hi = q_hi if hi is None else min(hi, q_hi)
        return lo, hi

    def sql(
        self,
        text: str,
        since: Any = None,
        until: Any = None,
        limit: int | None = None,
        timeout: float | None = None,
        include_archive: bool = False,
    ) -> pa.Table:
        """Read-only SQL over the ``logs`` view (validated first: one SELECT, nothing else)."""
        validate_read_only(text)
        run = self.open_query(self.scan_set(since, until, include_archive=include_archive), trusted=False)
        try:
            return run.table(text, max_rows=limit, timeout_secs=timeout)
        finally:
            run.close()

    # -- archive and lifecycle ----------------------------------------------------------------
    @property
    def archive(self) -> Any:
        if self._archive is None:
            from kubetrail.store.archive import Archive

            self._archive = Archive(self)
        return self._archive

    def maintenance_due(self) -> bool:
        now = time.monotonic()
        return (
            now - self._last_retention >= self.config.retention.interval_secs
            or now - self._last_compaction >= self.config.compaction.interval_secs
        )

    def run_maintenance(self, force: bool = False) -> Any:
        """Retention/archive every ``retention.interval_secs``, compaction every
        ``compaction.interval_secs`` (both when ``force``); returns a ``RetentionReport`` or None.

        Cheap when nothing is due. With ``auto_maintenance`` the store starts it itself in a
        background thread after a flush; the server or ``kubetrail retention run`` may also call it.
        """
        from kubetrail.store.retention import RetentionReport, compact, enforce

        if not self._maintenance_lock.acquire(blocking=force):
            return None  # another run is in progress
        try:
            if self.closed:
                return None
            now = time.monotonic()
            report: RetentionReport | None = None
            if force or now - self._last_retention >= self.config.retention.interval_secs:
                self._last_retention = now
                report = enforce(self)
            if force or now - self._last_compaction >= self.config.compaction.interval_secs:
                self._last_compaction = now
                report = report or RetentionReport()
                report.compacted_segments = compact(self)
            return report
        finally:
            self._maintenance_lock.release()

    def _maybe_start_maintenance(self) -> None:
        if self.closed:
            return
        if not self.config.auto_maintenance or not self.maintenance_due() or self._maintenance_lock.locked():
            return
        thread = threading.Thread(
            target=self._background_maintenance, name="kubetrail-store-maint", daemon=True
        )
        thread.start()

    def _background_maintenance(self) -> None:
        import logging

        try:
            self.run_maintenance()
        except Exception:  # a failed pass is retried at the next interval; never kill the writer
            logging.getLogger(__name__).exception("store maintenance failed")

    def forget_segment_cache(self, segment_ids: Sequence[str], hours: Sequence[int] = ()) -> None:
        for sid in segment_ids:
            self._blooms.pop(sid, None)
        for hour in hours:
            self._seen.invalidate(hour)

    def stats(self) -> dict[str, int]:
        out = self.catalog.totals()
        out["tail_rows"] = self.tail.rows
        out["duplicates_dropped"] = self.duplicates_dropped
        return out

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "segments").rglob("*.parquet"))

    def close(self) -> None:
        if self.closed:
            return
        self._flush()
        with self._maintenance_lock:  # let a background pass finish before the catalog closes
            self.closed = True
        if self._duck is not None:
            self._duck.close()
        self.catalog.close()

    def destroy(self) -> None:
        """Close and delete everything under the root (tests, benchmarks)."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHARED: dict[Path, Store] = {}
_SHARED_LOCK = threading.Lock()


def open_shared(path: str | Path, config: StoreConfig | None = None) -> Store:
    """One ``Store`` per root directory in this process (the server and the ``store`` output share it)."""
    key = Path(path).resolve()
    with _SHARED_LOCK:
        store = _SHARED.get(key)
        if store is None or store.closed:
            store = Store(key, config)
            _SHARED[key] = store
        return store
