"""Docker json-file logs: ``{"log":"...\\n","stream":"stdout","time":"<RFC3339Nano>"}`` per line.

dockerd splits lines at 16 KiB: a ``log`` value without the trailing ``\\n`` continues in the next
record of the same stream. Decoding is one ``pyarrow.json.read_json`` call over the whole block (a
SIMD JSON reader, no Python per line). When that fails (one malformed line fails the whole read) or
does not return one row per line, the block is decoded with DuckDB's ``json_valid`` /
``json_extract_string`` over an Arrow column instead, and only the bad lines are kept raw and flagged
``bad_json``.
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from kubetrail.formats.base import register_parser
from kubetrail.formats.container import ContainerParser
from kubetrail.formats.kernels import Flags, from_np, slice_ranges, to_np, to_utf8
from kubetrail.formats.lines import LineBlock
from kubetrail.formats.partials import UNKNOWN_STREAM, Pieces
from kubetrail.formats.timeparse import parse_rfc3339

__all__ = ["DockerParser"]

_SCHEMA = pa.schema([("log", pa.string()), ("stream", pa.string()), ("time", pa.string())])
_READ = pj.ReadOptions(use_threads=False, block_size=1 << 26)
_PARSE = pj.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")
_local = threading.local()


def _duckdb() -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        con.execute("SET threads=1")
        _local.con = con
    return con


def _read_fast(block: LineBlock) -> pa.Table | None:
    """One bulk read when the block is plain JSON lines; None when the slow path is needed."""
    if block.bits.any():
        return None
    region = memoryview(block.data)[int(block.starts[0]) : int(block.ends[-1]) + 1]
    try:
        table = pj.read_json(pa.BufferReader(pa.py_buffer(region)), read_options=_READ, parse_options=_PARSE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == len(block) else None


def _read_slow(lines: pa.StringArray) -> tuple[pa.Table, npt.NDArray[np.bool_]]:
    """DuckDB over the line column: invalid JSON lines come back null and are marked bad."""
    src = pa.table({"l": lines})
    con = _duckdb()
    con.register("docker_lines", src)
    try:
        out = con.sql(
            "SELECT json_extract_string(j, '$.log') AS log, json_extract_string(j, '$.stream') AS stream, "
            "json_extract_string(j, '$.time') AS time "
            "FROM (SELECT CASE WHEN json_valid(l) THEN l END AS j FROM docker_lines)"
        ).to_arrow_table()
    finally:
        con.unregister("docker_lines")
    bad = to_np(pc.is_null(out.column("log")))
    return out, bad


@register_parser("docker")
class DockerParser(ContainerParser):
    """Docker's json-file log driver (``/var/lib/docker/containers/<id>/<id>-json.log``)."""

    def decode_block(self, block: LineBlock, fallback_ns: int) -> tuple[Pieces, npt.NDArray[np.bool_]]:
        n = len(block)
        bits = block.bits.copy()
        table = _read_fast(block)
        bad = np.zeros(n, dtype=bool)
        raw: pa.StringArray | None = None
        if table is None:
            raw, _ = to_utf8(block.lines())
            table, bad = _read_slow(raw)
            self.stats["slow_path_blocks"] += 1
        log = table.column("log").combine_chunks()
        stream_col = table.column("stream").combine_chunks()
        time_col = table.column("time").combine_chunks()
        if bad.any() and raw is not None:
            bits[bad] |= np.uint16(Flags.bit("bad_json"))
            log = pc.if_else(from_np(bad), raw, log)
        log = log.fill_null("")
        # a value ending in "\n" is a whole line (final); drop the "\n" with one take
        value_offsets = np.frombuffer(log.buffers()[1], dtype=np.int32)[log.offset : log.offset + n + 1]
        final = to_np(pc.ends_with(log, "\n")) | bad
        cut_final = final & ~bad
        value_starts = value_offsets[:-1].astype(np.int64)
        value_ends = value_offsets[1:].astype(np.int64) - cut_final
        message = slice_ranges(log.buffers()[2] or b"", value_starts, value_ends)
        is_err = to_np(pc.equal(stream_col, "stderr"), False)
        stream = is_err.astype(np.int8)
        stream[bad] = UNKNOWN_STREAM
        ts, bad_ts = parse_rfc3339(pc.if_else(from_np(bad), pa.nulls(n, pa.string()), time_col), fallback_ns)
        bad_ts &= ~bad
        if bad_ts.any():
            bits[bad_ts] |= np.uint16(Flags.bit("bad_timestamp"))
        return Pieces(message, stream, ts, block.offsets, bits), final
