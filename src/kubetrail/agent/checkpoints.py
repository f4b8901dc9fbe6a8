"""Checkpoints: acknowledged offsets per stream, in SQLite (WAL mode) on the node.

A row is written only for bytes the server acknowledged (after its WAL fsync), so after kill -9 the
agent resumes at or before the first unacknowledged byte: at worst it re-sends, and the server's dedup by
``event.id`` (origin-derived) makes that harmless. WAL with ``synchronous=NORMAL`` survives a process
kill (an OS crash can lose the last commits, which again only means a re-send).

A write failure (full disk, read-only volume) is reported and retried on the next save; the agent keeps
working from memory meanwhile, so a full disk costs re-sends after a restart, never data.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kubetrail.errors import StorageError

__all__ = ["Checkpoint", "CheckpointStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    updated REAL NOT NULL,
    seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(slots=True)
class Checkpoint:
    key: str
    dev: int
    inode: int
    fingerprint: str
    path: str
    offset: int
    updated: float
    seen: float  # last time the file was seen on disk (for garbage collection)


class CheckpointStore:
    """Small synchronous store; every call is a short transaction (the agent calls it once a second)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open checkpoint database: {exc}", path=str(path)) from exc
        self.fresh = self.count() == 0 and self.get("started") is None
        if self.fresh:
            self.put("started", str(time.time()))
        self.last_save = time.time()
        self.last_error: str | None = None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM checkpoints").fetchone()[0])

    def load(self) -> dict[str, Checkpoint]:
        rows = self._db.execute(
            "SELECT key, dev, inode, fingerprint, path, offset, updated, seen FROM checkpoints"
        ).fetchall()
        return {r[0]: Checkpoint(*r) for r in rows}

    def save(self, rows: Iterable[Checkpoint], delete: Iterable[str] = ()) -> bool:
        """Upsert rows and delete keys in one transaction; False (and ``last_error``) on failure."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO checkpoints VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                "offset=excluded.offset, path=excluded.path, updated=excluded.updated, seen=excluded.seen",
                [(c.key, c.dev, c.inode, c.fingerprint, c.path, c.offset, c.updated, c.seen) for c in rows],
            )
            self._db.executemany("DELETE FROM checkpoints WHERE key = ?", [(k,) for k in delete])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.last_error = None
        self.last_save = time.time()
        return True

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> bool:
        try:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
        except sqlite3.Error as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def close(self) -> None:
        self._db.close()
