"""Builders shared by the format tests."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pyarrow as pa

from kubetrail.chunk import Chunk, FileIdentity, Origin

NOW = datetime(2024, 5, 6, tzinfo=UTC)
POD_PATH = "/var/log/pods/default_web-1_6f1c2d3e-0000-4000-8000-000000000001/app/2.log"


def origin(offset: int = 0, path: str = POD_PATH, inode: int = 7, **kw: object) -> Origin:
    return Origin(
        node="node-a",
        source=str(kw.pop("source", "container")),
        path=path,
        file=FileIdentity(1, inode, "fp"),
        offset=offset,
        **kw,  # type: ignore[arg-type]
    )


def chunk(data: bytes, offset: int = 0, **kw: object) -> Chunk:
    return Chunk(origin(offset, **kw), data)


def split_feed(parser: object, data: bytes, cuts: list[int], **kw: object) -> list[pa.RecordBatch]:
    """Feed ``data`` cut at ``cuts`` (sorted byte positions) as consecutive chunks, then force a flush."""
    batches = []
    bounds = [0, *cuts, len(data)]
    for lo, hi in pairwise(bounds):
        batches.append(parser.parse(chunk(data[lo:hi], lo, **kw), NOW))  # type: ignore[attr-defined]
    batches.append(parser.flush(NOW, force=True))  # type: ignore[attr-defined]
    return batches


def _plain(column: pa.Array) -> pa.Array:
    """Timestamps as int64 nanoseconds (``to_pylist`` would round them to microseconds)."""
    return column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column


def ns(text: str) -> int:
    """Epoch nanoseconds of an ISO time with a zone (sub-microsecond digits allowed)."""
    return int(pa.array([text]).cast(pa.timestamp("ns", "UTC")).cast(pa.int64())[0].as_py())


def rows(batches: list[pa.RecordBatch] | pa.RecordBatch, *columns: str) -> list[tuple[object, ...]]:
    if isinstance(batches, pa.RecordBatch):
        batches = [batches]
    out: list[tuple[object, ...]] = []
    for batch in batches:
        cols = [_plain(batch.column(c)).to_pylist() for c in columns]
        out += list(zip(*cols, strict=True))
    return out
