"""Shared checks for the klog / syslog / journald / audit parser tests: fuzzing and chunk splits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import pairwise

import pyarrow as pa
from hypothesis import strategies as st

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.formats.base import Parser

NOW = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)


def file_origin(source: str, offset: int = 0, path: str = "/var/log/test.log") -> Origin:
    return Origin(node="node-1", source=source, path=path, file=FileIdentity(1, 42, "fp"), offset=offset)


def parse_in_chunks(make: Callable[[], Parser], data: bytes, cuts: Sequence[int], source: str) -> list[dict]:
    """Feed ``data`` cut at ``cuts`` as contiguous chunks, then force a flush; all rows."""
    parser = make()
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]
    batches: list[pa.RecordBatch] = []
    for lo, hi in pairwise(bounds):
        batches.append(parser.parse(Chunk(file_origin(source, lo), data[lo:hi]), NOW))
    batches.append(parser.flush(NOW, force=True))
    rows: list[dict] = []
    for batch in batches:
        rows.extend(batch.to_pylist())
    return rows


def check_fuzz(make: Callable[[], Parser], data: bytes, source: str) -> list[dict]:
    """Arbitrary bytes never raise and never hit the internal-error fallback; one row per line."""
    rows = parse_in_chunks(make, data, [], source)
    expected = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    lines = len(rows) if source == "audit" else expected
    assert len(rows) == lines
    assert all(r["event.id"] for r in rows)
    assert len({r["event.id"] for r in rows}) == len(rows)
    assert not [r for r in rows if r["event.parse_error"] == "internal_error"], rows
    return rows


def comparable(rows: list[dict]) -> list[tuple]:
    keep = ("event.id", "message", "event.parse_error", "@timestamp", "log.level", "attributes")
    return [tuple(r[k] for k in keep) for r in rows]


def mutations(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid lines with a random byte range replaced by random bytes (newlines included)."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        line = draw(valid)
        start = draw(st.integers(0, len(line)))
        end = draw(st.integers(start, len(line)))
        return line[:start] + draw(st.binary(max_size=8)) + line[end:]

    return mutate()
