"""Test doubles for the server's neighbours: a line parser and an in-memory store that dedups.

They implement the same small interfaces (``ChunkParser``, ``StoreLike``) the real formats dispatcher
and store do, so pipeline tests run before (and independently of) those parts.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from kubetrail.chunk import Chunk
from kubetrail.config import validate_config
from kubetrail.formats.lines import split_lines
from kubetrail.schema import conform, empty_batch
from kubetrail.server.app import KubetrailServer


class LineParser:
    """One event per line; event.id = origin prefix + absolute byte offset (like the real parsers)."""

    def parse(self, chunk: Chunk, now: datetime | None = None) -> pa.RecordBatch:
        lines = split_lines(chunk.data)
        n = len(lines.lines)
        if n == 0:
            return empty_batch()
        offsets = [chunk.origin.offset + o for o in lines.offsets.to_pylist()]
        prefix = chunk.origin.id_prefix()
        return conform(
            {
                "event.id": pa.array([f"{prefix}-{o}" for o in offsets]),
                "message": lines.lines.cast(pa.string()),
                "host.name": pa.array([chunk.origin.node] * n),
                "log.offset": pa.array(offsets, pa.int64()),
                "event.dataset": pa.array([chunk.origin.source] * n),
            },
            n,
        )

    def flush(self, now: datetime | None = None, force: bool = False) -> pa.RecordBatch:
        return empty_batch()


class MemoryStore:
    """Keeps rows by event.id (dedup), and counts what was appended and flushed."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.appended = 0
        self.flushes = 0
        self.lock = threading.Lock()

    def append(self, batch: pa.RecordBatch) -> None:
        with self.lock:
            for row in batch.to_pylist():
                self.rows.setdefault(row["event.id"], row)
                self.appended += 1

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass

    def messages(self) -> list[str]:
        return sorted(r["message"] for r in self.rows.values())


def make_server(
    tmp_path: Path, raw: dict[str, Any], store: MemoryStore | None = None, parser: Any = None
) -> KubetrailServer:
    raw = dict(raw)
    raw.setdefault("data_dir", str(tmp_path / "data"))
    server_section = dict(raw.get("server") or {})
    server_section.setdefault("listen", "127.0.0.1:0")
    server_section.setdefault("store_flush_interval_secs", 0.2)
    raw["server"] = server_section
    cfg, topology = validate_config(raw)
    return KubetrailServer(cfg, topology, store=store or MemoryStore(), parser=parser or LineParser())


async def settle(server: KubetrailServer) -> None:
    assert server.pipeline is not None
    await server.pipeline.wait_idle()
    await asyncio.sleep(0)
