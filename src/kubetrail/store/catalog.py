"""The segment catalog: one SQLite database (WAL mode) describing every Parquet segment.

Why SQLite: segment selection (time range, tier, token filter) must be a cheap indexed lookup that
survives restarts and is updated atomically with the files (a compaction swaps N segments for one
in one transaction). Tables:

    segments     id, path (relative to the store root), tier (hot|archive), archive_key,
                 partition (YYYY-MM-DD/HH), min_ts/max_ts (ns), rows, bytes, created_ns,
                 datasets/namespaces (JSON lists, null when more than MAX_DISTINCT values),
                 stats (JSON: per key column [min, max]), deleted_ns (set when superseded; the
                 file is unlinked after a grace period so running queries keep their files),
                 schema_fp (fingerprint of the file's Arrow schema: files sharing one are read
                 without union_by_name, which would open every footer at bind time)
    segment_groups  segment_id, dataset, namespace, rows   (sizes for per-scope retention)
    blooms       segment_id, index_version, num_bits, k, bits (the token index)
    holds        id, namespace, dataset, segment_id, start_ns, end_ns, reason, created_ns
    meta         key, value
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kubetrail.store.tokens import INDEX_VERSION, TokenIndex

__all__ = ["MAX_DISTINCT", "Catalog", "Hold", "SegmentInfo"]

MAX_DISTINCT = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    tier TEXT NOT NULL DEFAULT 'hot',
    archive_key TEXT,
    partition TEXT NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    datasets TEXT,
    namespaces TEXT,
    stats TEXT NOT NULL DEFAULT '{}',
    deleted_ns INTEGER,
    schema_fp TEXT
);
CREATE INDEX IF NOT EXISTS segments_time ON segments (max_ts, min_ts);
CREATE INDEX IF NOT EXISTS segments_partition ON segments (partition);
CREATE TABLE IF NOT EXISTS segment_groups (
    segment_id TEXT NOT NULL,
    dataset TEXT,
    namespace TEXT,
    rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS segment_groups_id ON segment_groups (segment_id);
CREATE TABLE IF NOT EXISTS blooms (
    segment_id TEXT PRIMARY KEY,
    index_version INTEGER NOT NULL,
    num_bits INTEGER NOT NULL,
    k INTEGER NOT NULL,
    bits BLOB NOT NULL,
    block_rows INTEGER,
    sizes BLOB
);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT,
    dataset TEXT,
    segment_id TEXT,
    start_ns INTEGER,
    end_ns INTEGER,
    reason TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class SegmentInfo:
    """One segment's catalog row."""

    id: str
    path: str
    partition: str
    min_ts: int
    max_ts: int
    rows: int
    bytes: int
    tier: str = "hot"
    archive_key: str | None = None
    created_ns: int = 0
    datasets: list[str] | None = None
    namespaces: list[str] | None = None
    stats: dict[str, list[Any]] = field(default_factory=dict)
    groups: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    deleted_ns: int | None = None
    schema_fp: str | None = None


@dataclass(frozen=True)
class Hold:
    """A legal hold: rows it covers are never deleted by retention (nulls mean 'any')."""

    id: int
    reason: str
    namespace: str | None = None
    dataset: str | None = None
    segment_id: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None


_SEG_COLUMNS = (
    "id, path, partition, min_ts, max_ts, rows, bytes, tier, archive_key, created_ns, datasets, "
    "namespaces, stats, deleted_ns, schema_fp"
)


def _row_to_segment(row: Sequence[Any]) -> SegmentInfo:
    return SegmentInfo(
        id=row[0],
        path=row[1],
        partition=row[2],
        min_ts=row[3],
        max_ts=row[4],
        rows=row[5],
        bytes=row[6],
        tier=row[7],
        archive_key=row[8],
        created_ns=row[9],
        datasets=json.loads(row[10]) if row[10] is not None else None,
        namespaces=json.loads(row[11]) if row[11] is not None else None,
        stats=json.loads(row[12]),
        deleted_ns=row[13],
        schema_fp=row[14],
    )


class Catalog:
    """Thread-safe access to the catalog database (one connection, serialized by a lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new database only
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(segments)").fetchall()}
        if "schema_fp" not in columns:  # catalogs from before the column existed
            self._db.execute("ALTER TABLE segments ADD COLUMN schema_fp TEXT")
        bloom_columns = {r[1] for r in self._db.execute("PRAGMA table_info(blooms)").fetchall()}
        for column, kind in (("block_rows", "INTEGER"), ("sizes", "BLOB")):
            if column not in bloom_columns:  # catalogs from before block filters
                self._db.execute(f"ALTER TABLE blooms ADD COLUMN {column} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- segments ---------------------------------------------------------------------------
    @staticmethod
    def insert_segment(db: sqlite3.Connection, seg: SegmentInfo, bloom: TokenIndex | None) -> None:
        db.execute(
            f"INSERT INTO segments ({_SEG_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                seg.id,
                seg.path,
                seg.partition,
                seg.min_ts,
                seg.max_ts,
                seg.rows,
                seg.bytes,
                seg.tier,
                seg.archive_key,
                seg.created_ns or time.time_ns(),
                json.dumps(seg.datasets) if seg.datasets is not None else None,
                json.dumps(seg.namespaces) if seg.namespaces is not None else None,
                json.dumps(seg.stats),
                seg.deleted_ns,
                seg.schema_fp,
            ),
        )
        db.executemany(
            "INSERT INTO segment_groups (segment_id, dataset, namespace, rows) VALUES (?,?,?,?)",
            [(seg.id, d, n, r) for d, n, r in seg.groups],
        )
        if bloom is not None:
            db.execute(
                "INSERT INTO blooms (segment_id, index_version, num_bits, k, bits, block_rows, sizes) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    seg.id,
                    INDEX_VERSION,
                    int(bloom.sizes.sum()),
                    bloom.k,
                    bloom.bits,
                    bloom.block_rows,
                    bloom.sizes_bytes(),
                ),
            )

    def add_segment(self, seg: SegmentInfo, bloom: TokenIndex | None) -> None:
        with self.transaction() as db:
            self.insert_segment(db, seg, bloom)

    @staticmethod
    def mark_deleted(db: sqlite3.Connection, segment_ids: Sequence[str], now_ns: int) -> None:
        db.executemany(
            "UPDATE segments SET deleted_ns = ? WHERE id = ? AND deleted_ns IS NULL",
            [(now_ns, s) for s in segment_ids],
        )

    def segments(
        self,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tiers: Sequence[str] = ("hot",),
        partition: str | None = None,
    ) -> list[SegmentInfo]:
        """Live segments overlapping [since, until) in the given tiers, oldest first."""
        sql = f"SELECT {_SEG_COLUMNS} FROM segments WHERE deleted_ns IS NULL"
        args: list[Any] = []
        if since_ns is not None:
            sql += " AND max_ts >= ?"
            args.append(since_ns)
        if until_ns is not None:
            sql += " AND min_ts < ?"
            args.append(until_ns)
        sql += f" AND tier IN ({','.join('?' * len(tiers))})"
        args += list(tiers)
        if partition is not None:
            sql += " AND partition = ?"
            args.append(partition)
        sql += " ORDER BY min_ts, id"
        with self._lock:
            return [_row_to_segment(r) for r in self._db.execute(sql, args).fetchall()]

    def get(self, segment_id: str) -> SegmentInfo | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_SEG_COLUMNS} FROM segments WHERE id = ?", (segment_id,)
            ).fetchone()
        return _row_to_segment(row) if row else None

    def groups(self, segment_id: str) -> list[tuple[str | None, str | None, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT dataset, namespace, rows FROM segment_groups WHERE segment_id = ?", (segment_id,)
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def deleted_before(self, cutoff_ns: int) -> list[SegmentInfo]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SEG_COLUMNS} FROM segments WHERE deleted_ns IS NOT NULL AND deleted_ns < ?",
                (cutoff_ns,),
            ).fetchall()
        return [_row_to_segment(r) for r in rows]

    def purge(self, segment_ids: Sequence[str]) -> None:
        """Forget superseded segments entirely (their files are gone)."""
        with self.transaction() as db:
            for table, col in (
                ("segments", "id"),
                ("segment_groups", "segment_id"),
                ("blooms", "segment_id"),
            ):
                db.executemany(f"DELETE FROM {table} WHERE {col} = ?", [(s,) for s in segment_ids])
        with self._lock:  # give the freed Bloom filter pages back to the file system
            self._db.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page a call
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def set_tier(self, segment_id: str, tier: str, path: str, archive_key: str | None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE segments SET tier = ?, path = ?, archive_key = ? WHERE id = ?",
                (tier, path, archive_key, segment_id),
            )

    def bloom(self, segment_id: str) -> TokenIndex | None:
        """The segment's token index, or None (no index, or built by another index version)."""
        with self._lock:
            row = self._db.execute(
                "SELECT index_version, num_bits, k, bits, block_rows, sizes FROM blooms WHERE segment_id = ?",
                (segment_id,),
            ).fetchone()
        if row is None or row[0] != INDEX_VERSION:
            return None
        if row[4] is None:  # one filter of num_bits for the whole segment (written before block filters)
            return TokenIndex(bytes(row[3]), np.array([row[1]], dtype=np.uint64), int(row[2]), 0)
        sizes = np.frombuffer(bytes(row[5]), dtype="<u8").astype(np.uint64)
        return TokenIndex(bytes(row[3]), sizes, int(row[2]), int(row[4]))

    def totals(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT tier, count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0) FROM segments "
                "WHERE deleted_ns IS NULL GROUP BY tier"
            ).fetchall()
        out: dict[str, int] = {}
        for tier, count, nrows, nbytes in rows:
            out[f"{tier}_segments"] = count
            out[f"{tier}_rows"] = nrows
            out[f"{tier}_bytes"] = nbytes
        return out

    # -- legal holds ------------------------------------------------------------------------
    def add_hold(
        self,
        reason: str,
        namespace: str | None = None,
        dataset: str | None = None,
        segment_id: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO holds (namespace, dataset, segment_id, start_ns, end_ns, reason, created_ns) "
                "VALUES (?,?,?,?,?,?,?)",
                (namespace, dataset, segment_id, start_ns, end_ns, reason, time.time_ns()),
            )
            return int(cur.lastrowid or 0)

    def remove_hold(self, hold_id: int) -> bool:
        with self.transaction() as db:
            return db.execute("DELETE FROM holds WHERE id = ?", (hold_id,)).rowcount > 0

    def holds(self) -> list[Hold]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, reason, namespace, dataset, segment_id, start_ns, end_ns FROM holds ORDER BY id"
            ).fetchall()
        return [Hold(*r) for r in rows]

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
