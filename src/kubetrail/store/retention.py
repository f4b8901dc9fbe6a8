"""Retention, legal hold and compaction: the store's lifecycle, enforced by ``enforce(store, now)``.

Policies are row-precise: a segment holds many namespaces and datasets, so expiring one
namespace rewrites the segment without those rows (DuckDB over the file, a new segment and the
catalog swap in one transaction) instead of waiting for every row to expire. Legal holds
(namespace / dataset / time range / segment) protect the rows they cover from every deletion.
With the archive tier on and ``before_delete``, expired rows move to object storage instead of
being deleted. Every deletion or archival appends an ``event.dataset=internal`` audit event saying
what went and why. Superseded files are unlinked after ``delete_grace_secs`` so queries that
already listed them finish.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from kubetrail.schema import from_pylist
from kubetrail.store.catalog import Hold, SegmentInfo
from kubetrail.store.config import RetentionPolicy
from kubetrail.store.engine import sql_literal
from kubetrail.store.segments import HOUR_NS, read_segment

if TYPE_CHECKING:
    from kubetrail.store.core import Store

__all__ = ["RetentionReport", "compact", "enforce", "purge_superseded"]

DAY_NS = 86_400 * 10**9


@dataclass
class RetentionReport:
    """What one enforcement pass did."""

    deleted_rows: int = 0
    archived_rows: int = 0
    deleted_segments: int = 0
    archived_segments: int = 0
    rewritten_segments: int = 0
    compacted_segments: int = 0
    purged_files: int = 0
    actions: list[dict[str, object]] = field(default_factory=list)


def _ts(ns: int) -> str:
    return f"make_timestamp_ns({int(ns)})::TIMESTAMPTZ_NS"


def _matches(dataset: str | None, namespace: str | None) -> str:
    conds = ["TRUE"]
    if dataset is not None:
        conds.append(f'coalesce("event.dataset" = {sql_literal(dataset)}, FALSE)')
    if namespace is not None:
        conds.append(f'coalesce("kubernetes.namespace" = {sql_literal(namespace)}, FALSE)')
    return " AND ".join(conds)


def _specificity(p: RetentionPolicy) -> int:
    return (p.namespace is not None) * 2 + (p.dataset is not None)


def expired_predicate(policies: list[RetentionPolicy], default_days: float | None, now_ns: int) -> str:
    """SQL true for rows older than the max age of the most specific policy matching them."""
    whens = []
    for p in sorted(policies, key=_specificity, reverse=True):
        if p.dataset is None and p.namespace is None and p.max_age_days is None:
            continue
        cutoff = (
            "FALSE"
            if p.max_age_days is None
            else f'"@timestamp" < {_ts(now_ns - int(p.max_age_days * DAY_NS))}'
        )
        whens.append(f"WHEN {_matches(p.dataset, p.namespace)} THEN {cutoff}")
    default = (
        "FALSE" if default_days is None else f'"@timestamp" < {_ts(now_ns - int(default_days * DAY_NS))}'
    )
    return f"(CASE {' '.join(whens)} ELSE {default} END)" if whens else f"({default})"


def held_predicate(holds: list[Hold], segment_id: str) -> str:
    """SQL true for rows a legal hold protects."""
    conds = []
    for h in holds:
        if h.segment_id is not None and h.segment_id != segment_id:
            continue
        parts = [_matches(h.dataset, h.namespace)]
        if h.start_ns is not None:
            parts.append(f'"@timestamp" >= {_ts(h.start_ns)}')
        if h.end_ns is not None:
            parts.append(f'"@timestamp" < {_ts(h.end_ns)}')
        conds.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(conds) + ")" if conds else "FALSE"


def _audit(store: Store, now_ns: int, action: str, seg: SegmentInfo, rows: int, reason: str) -> None:
    detail = {"segment": seg.id, "partition": seg.partition, "rows": rows, "reason": reason, "tier": seg.tier}
    store.append(
        from_pylist(
            [
                {
                    "@timestamp": now_ns,
                    "event.ingested": now_ns,
                    "event.id": f"store-{action}-{seg.id}-{now_ns}",
                    "event.dataset": "internal",
                    "event.module": "store",
                    "event.action": f"retention.{action}",
                    "event.outcome": "success",
                    "message": f"{action} {rows} rows of segment {seg.id} ({seg.partition}): {reason}",
                    "attributes": json.dumps(detail),
                }
            ]
        )
    )


def _split(store: Store, seg: SegmentInfo, remove_sql: str) -> tuple[pa.Table, pa.Table]:
    con = duckdb.connect()
    try:
        src = f"read_parquet({sql_literal(str(store.root / seg.path))}, hive_partitioning = false)"
        keep = con.sql(f"SELECT * FROM {src} WHERE NOT coalesce({remove_sql}, FALSE)").to_arrow_table()
        gone = con.sql(f"SELECT * FROM {src} WHERE coalesce({remove_sql}, FALSE)").to_arrow_table()
    finally:
        con.close()
    schema = pq.read_schema(store.root / seg.path)
    return keep.cast(schema), gone.cast(schema)


def _replace(store: Store, old: SegmentInfo, tables: list[pa.Table], now_ns: int) -> list[SegmentInfo]:
    """Write ``tables`` as new segments of ``old``'s hour and swap them in atomically."""
    hour = old.min_ts // HOUR_NS
    written = [store.write_hour_segment(t, hour) for t in tables if t.num_rows]
    with store.catalog.transaction() as db:
        for info, bloom in written:
            store.catalog.insert_segment(db, info, bloom)
        store.catalog.mark_deleted(db, [old.id], time.time_ns())
    store.forget_segment_cache([old.id])
    return [info for info, _ in written]


def _count(store: Store, seg: SegmentInfo, expired: str, held: str) -> tuple[int, int]:
    con = duckdb.connect()
    try:
        row = con.sql(
            f"SELECT count(*) FILTER (WHERE coalesce({expired}, FALSE) AND NOT coalesce({held}, FALSE)), "
            f"count(*) FILTER (WHERE coalesce({held}, FALSE)) "
            f"FROM read_parquet({sql_literal(str(store.root / seg.path))}, hive_partitioning = false)"
        ).fetchall()[0]
    finally:
        con.close()
    return int(row[0]), int(row[1])


def _remove_rows(
    store: Store, seg: SegmentInfo, remove_sql: str, reason: str, now_ns: int, report: RetentionReport
) -> None:
    """Delete (or archive) the rows ``remove_sql`` selects from one hot segment."""
    archive = store.config.archive.enabled and store.config.archive.before_delete
    keep, gone = _split(store, seg, remove_sql)
    if gone.num_rows == 0:
        return
    if keep.num_rows == 0 and archive:
        store.archive.archive_segment(seg)
        report.archived_segments += 1
    elif keep.num_rows == 0:
        with store.catalog.transaction() as db:
            store.catalog.mark_deleted(db, [seg.id], time.time_ns())
        store.forget_segment_cache([seg.id])
        report.deleted_segments += 1
    else:
        new = _replace(store, seg, [keep, gone] if archive else [keep], now_ns)
        report.rewritten_segments += 1
        if archive:
            store.archive.archive_segment(new[-1])  # written in order: kept rows, then removed rows
            report.archived_segments += 1
    action = "archive" if archive else "delete"
    if archive:
        report.archived_rows += gone.num_rows
    else:
        report.deleted_rows += gone.num_rows
    report.actions.append({"action": action, "segment": seg.id, "rows": gone.num_rows, "reason": reason})
    _audit(store, now_ns, action, seg, gone.num_rows, reason)


def enforce(store: Store, now_ns: int | None = None) -> RetentionReport:
    """One retention pass: archive by age, expire by policy, cap sizes, expire the archive, purge."""
    now = time.time_ns() if now_ns is None else now_ns
    report = RetentionReport()
    cfg = store.config.retention
    acfg = store.config.archive
    holds = store.catalog.holds()
    held_segments = {
        h.segment_id for h in holds if h.segment_id and h.namespace is None and h.dataset is None
    }
    if acfg.enabled and acfg.after_days is not None:
        for seg in store.catalog.segments(until_ns=now - int(acfg.after_days * DAY_NS)):
            if seg.max_ts < now - int(acfg.after_days * DAY_NS):
                store.archive.archive_segment(seg)
                report.archived_segments += 1
                report.actions.append(
                    {"action": "archive", "segment": seg.id, "rows": seg.rows, "reason": "age"}
                )
    expired = expired_predicate(cfg.policies, cfg.default_max_age_days, now)
    ages = [p.max_age_days for p in cfg.policies if p.max_age_days is not None]
    if cfg.default_max_age_days is not None:
        ages.append(cfg.default_max_age_days)
    if ages:
        horizon = now - int(min(ages) * DAY_NS)
        for seg in store.catalog.segments(until_ns=horizon):
            if seg.id in held_segments:
                continue
            held = held_predicate(holds, seg.id)
            n_expired, _ = _count(store, seg, expired, held)
            if n_expired:
                remove = f"({expired} AND NOT {held})"
                _remove_rows(store, seg, remove, "max age exceeded", now, report)
    _enforce_sizes(store, holds, held_segments, now, report)
    if acfg.enabled and acfg.max_age_days is not None:
        cutoff = now - int(acfg.max_age_days * DAY_NS)
        for seg in store.catalog.segments(until_ns=cutoff, tiers=("archive",)):
            if seg.max_ts < cutoff and seg.id not in held_segments and not _any_hold_overlaps(holds, seg):
                store.archive.delete_segment(seg)
                report.deleted_segments += 1
                report.deleted_rows += seg.rows
                _audit(store, now, "delete", seg, seg.rows, "archive max age exceeded")
    report.purged_files = purge_superseded(store)
    return report


def _any_hold_overlaps(holds: list[Hold], seg: SegmentInfo) -> bool:
    for h in holds:
        if h.segment_id is not None and h.segment_id != seg.id:
            continue
        if h.start_ns is not None and seg.max_ts < h.start_ns:
            continue
        if h.end_ns is not None and seg.min_ts >= h.end_ns:
            continue
        if h.namespace is not None and seg.namespaces is not None and h.namespace not in seg.namespaces:
            continue
        if h.dataset is not None and seg.datasets is not None and h.dataset not in seg.datasets:
            continue
        return True
    return False


def _enforce_sizes(
    store: Store, holds: list[Hold], held_segments: set[str], now: int, report: RetentionReport
) -> None:
    cfg = store.config.retention
    scopes: list[tuple[str | None, str | None, int]] = [
        (p.dataset, p.namespace, p.max_bytes) for p in cfg.policies if p.max_bytes is not None
    ]
    if cfg.max_total_bytes is not None:
        scopes.append((None, None, cfg.max_total_bytes))
    for dataset, namespace, cap in scopes:
        segments = store.catalog.segments()

        def share(
            seg: SegmentInfo, dataset: str | None = dataset, namespace: str | None = namespace
        ) -> float:
            if dataset is None and namespace is None:
                return float(seg.bytes)
            rows = sum(
                r
                for d, n, r in store.catalog.groups(seg.id)
                if (dataset is None or d == dataset) and (namespace is None or n == namespace)
            )
            return seg.bytes * rows / max(seg.rows, 1)

        sizes = [(seg, share(seg)) for seg in segments]
        total = sum(s for _, s in sizes)
        for seg, size in sizes:  # oldest first
            if total <= cap:
                break
            if size == 0 or seg.id in held_segments:
                continue
            remove = f"({_matches(dataset, namespace)} AND NOT {held_predicate(holds, seg.id)})"
            scope = f"dataset={dataset or '*'} namespace={namespace or '*'}"
            _remove_rows(store, seg, remove, f"size cap {cap} bytes exceeded for {scope}", now, report)
            total -= size


def purge_superseded(store: Store) -> int:
    """Unlink files of segments superseded more than ``delete_grace_secs`` ago (wall clock)."""
    gone = store.catalog.deleted_before(time.time_ns() - int(store.config.delete_grace_secs * 1e9) + 1)
    for seg in gone:
        if seg.tier == "hot":
            (store.root / seg.path).unlink(missing_ok=True)
    if gone:
        store.catalog.purge([s.id for s in gone])
    return len(gone)


def compact(store: Store, now_ns: int | None = None) -> int:
    """Merge small segments of the same hour; returns how many segments were merged away."""
    now = time.time_ns() if now_ns is None else now_ns
    cfg = store.config.compaction
    by_partition: dict[str, list[SegmentInfo]] = {}
    for seg in store.catalog.segments():
        if seg.bytes < cfg.small_segment_bytes and seg.max_ts < now - int(cfg.min_age_secs * 1e9):
            by_partition.setdefault(seg.partition, []).append(seg)
    merges: list[list[SegmentInfo]] = []
    for group in by_partition.values():
        runs: list[list[SegmentInfo]] = [[]]
        size = 0
        for seg in group:
            if size + seg.bytes > cfg.target_segment_bytes and runs[-1]:
                runs.append([])
                size = 0
            runs[-1].append(seg)
            size += seg.bytes
        merges += [run for run in runs if len(run) >= 2]
    # sorting, zstd and token hashing release the GIL: threads use the cores
    with ThreadPoolExecutor(max_workers=cfg.threads) as pool:
        list(pool.map(lambda run: _merge(store, run, now), merges))
    return sum(len(run) for run in merges)


def _merge(store: Store, segments: list[SegmentInfo], now_ns: int) -> SegmentInfo:
    tables = [read_segment(store.root / s.path) for s in segments]
    table = pa.concat_tables(tables, promote_options="default")
    info, bloom = store.write_hour_segment(table, segments[0].min_ts // HOUR_NS, merged=True)
    with store.catalog.transaction() as db:
        store.catalog.insert_segment(db, info, bloom)
        store.catalog.mark_deleted(db, [s.id for s in segments], time.time_ns())
    store.forget_segment_cache([s.id for s in segments])
    return info
