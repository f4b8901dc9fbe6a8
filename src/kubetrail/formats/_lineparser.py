"""A base for line-oriented parsers: framing, carried tails, size caps, UTF-8, ids, common columns.

Subclasses (klog, syslog, journald, audit) only turn a column of decoded lines into columns. This
base does what every one of them needs and must do the same way:

* the unterminated tail of a chunk waits (per ``origin.stream_key()``) for the next contiguous chunk;
  ``flush`` emits tails older than ``tail_timeout_secs`` (all with ``force``) flagged
  ``incomplete_line``, and the rest of such a line, when it arrives later, is flagged
  ``incomplete_line`` too; a tail that the next chunk does not continue is emitted flagged
  ``stream_gap`` and ``incomplete_line`` (the same codes as the container parsers' ``LineCarry``);
* lines longer than ``max_line_bytes`` are cut and flagged ``line_too_long`` — also when the line
  spans many chunks, whose middle is then never buffered (memory stays bounded);
* invalid UTF-8 and NUL bytes are replaced by U+FFFD and flagged;
* ``event.id`` = ``origin.id_prefix()-<absolute byte offset of the line>``, built in one kernel;
* nothing escapes: if a subclass's vectorized path raises, the lines are stored raw and flagged
  ``internal_error`` (and counted) rather than lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Chunk, Origin
from kubetrail.formats._flags import Flags
from kubetrail.formats._times import bisect_failures, now_ns
from kubetrail.formats.base import Parser
from kubetrail.formats.kernels import slice_ranges
from kubetrail.formats.lines import find_lines
from kubetrail.schema import SCHEMA, TIMESTAMP, conform, empty_batch

__all__ = ["DEFAULT_MAX_LINE_BYTES", "LineParser", "Rows", "decode_lines", "event_ids"]

DEFAULT_MAX_LINE_BYTES = 1 << 20


@dataclass
class Rows:
    """What a subclass returns: schema columns, plus how rows map to lines when they are not 1:1."""

    columns: dict[str, pa.Array]
    flags: Flags
    line_index: pa.Array | None = None  # row -> line (EventList items share a line)
    id_suffix: pa.Array | None = None  # appended to the id of rows that share a line (".<item>")


@dataclass
class _Tail:
    origin: Origin
    start: int  # absolute offset of the tail's first byte
    head: bytes  # at most max_line_bytes of it
    dropped: int  # bytes beyond head that were not kept
    since: datetime

    @property
    def end(self) -> int:
        return self.start + len(self.head) + self.dropped


@dataclass
class _Framed:
    lines: pa.BinaryArray
    offsets: np.ndarray  # absolute, int64
    flagged: dict[str, tuple[list[int], list[str]]] = field(default_factory=dict)

    def flag(self, reason: str, row: int, detail: str) -> None:
        rows, details = self.flagged.setdefault(reason, ([], []))
        rows.append(row)
        details.append(detail)


def event_ids(prefix: str, offsets: pa.Array, suffix: pa.Array | None = None) -> pa.Array:
    """``prefix-offset[suffix]`` for every row, in one kernel."""
    ids = pc.binary_join_element_wise(pa.scalar(prefix + "-"), offsets.cast(pa.string()), "")
    if suffix is not None:
        ids = pc.binary_join_element_wise(ids, pc.fill_null(suffix.cast(pa.string()), ""), "")
    return ids


def decode_lines(lines: pa.Array, flags: Flags) -> pa.StringArray:
    """Binary lines -> strings; invalid UTF-8 and NUL bytes replaced by U+FFFD and flagged.

    The common case (all valid) is one validating cast. Bad rows are found by bisection and only
    they are decoded one by one with replacement.
    """
    if pa.types.is_string(lines.type):
        text = lines
    else:
        bad = bisect_failures(lines, lambda part: part.cast(pa.string()))
        if bad:
            raw = lines.take(pa.array(bad, pa.int64())).to_pylist()
            fixed = [b.decode("utf-8", "replace") for b in raw]
            mask = np.zeros(len(lines), dtype=bool)
            mask[bad] = True
            unchecked = lines.cast(pa.string(), safe=False)
            text = pc.replace_with_mask(unchecked, pa.array(mask), pa.array(fixed, pa.string()))
            details = [f"{b.decode('utf-8', 'replace').count(chr(0xFFFD))} invalid byte(s)" for b in raw]
            flags.add_rows("invalid_utf8", bad, [f"{d} replaced by U+FFFD" for d in details])
        else:
            text = lines.cast(pa.string())
    data = text.buffers()[2]
    raw = data.to_pybytes() if data is not None else b""
    if b"\x00" in raw:  # cheap whole-buffer scan first; the per-row kernel only when needed
        has_nul = pc.match_substring(text, "\x00")
        flags.add("nul_bytes", has_nul, "NUL byte(s) replaced by U+FFFD")
        text = pc.replace_substring(text, "\x00", "\ufffd")
    if b"\r" in raw:
        text = pc.utf8_rtrim(text, characters="\r")
    return text


class LineParser(Parser):
    """Base of the node/audit parsers; subclasses implement ``parse_text``."""

    dataset: str = "node"

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, tail_timeout_secs: float = 30.0) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self.tail_timeout = timedelta(seconds=tail_timeout_secs)
        self.stats: dict[str, int] = {"chunks": 0, "bytes": 0, "lines": 0, "events": 0, "errors": 0}
        self._tails: dict[str, _Tail] = {}
        self._orphans: dict[str, int] = {}  # stream -> offset where a flushed partial line continues

    # -- to implement -------------------------------------------------------------------------------
    def parse_text(self, text: pa.StringArray, origin: Origin, now_ns: int, flags: Flags) -> Rows:
        raise NotImplementedError  # abstract: each line parser implements it

    def dataset_for(self, origin: Origin) -> str:
        return self.dataset

    # -- Parser API ---------------------------------------------------------------------------------
    def parse(self, chunk: Chunk, now: datetime | None = None) -> pa.RecordBatch:
        now = now or datetime.now(UTC)
        self.stats["chunks"] += 1
        self.stats["bytes"] += len(chunk.data)
        batches: list[pa.RecordBatch] = []
        try:
            framed, stale = self._frame(chunk, now)
        except Exception as exc:  # framing is simple; keep the bytes if it ever fails
            framed, stale = (
                _Framed(pa.array([chunk.data], pa.binary()), np.array([chunk.origin.offset])),
                None,
            )
            framed.flag("internal_error", 0, f"framing failed: {exc!r}")
        if stale is not None:
            batches.append(
                self._emit_tail(
                    stale, now, "a later chunk did not continue it", ("stream_gap", "incomplete_line")
                )
            )
        if len(framed.lines):
            batches.append(self.build(framed.lines, framed.offsets, chunk.origin, now, framed.flagged))
        return _concat(batches)

    def flush(self, now: datetime | None = None, force: bool = False) -> pa.RecordBatch:
        now = now or datetime.now(UTC)
        batches = []
        for key, tail in list(self._tails.items()):
            if force or now - tail.since >= self.tail_timeout:
                del self._tails[key]
                self._orphans[key] = tail.end
                reason = "flushed at shutdown" if force else f"no newline within {self.tail_timeout}"
                batches.append(self._emit_tail(tail, now, reason))
        return _concat(batches)

    # -- framing ------------------------------------------------------------------------------------
    def _frame(self, chunk: Chunk, now: datetime) -> tuple[_Framed, _Tail | None]:
        origin = chunk.origin
        key = origin.stream_key()
        data, base = chunk.data, origin.offset
        stale: _Tail | None = None
        carried: tuple[bytes, int, int] | None = None  # overflowing line completed in this chunk
        continues_orphan = self._orphans.pop(key, None) == base
        tail = self._tails.pop(key, None)
        if tail is not None and (tail.end != base or tail.origin.id_prefix() != origin.id_prefix()):
            stale, tail = tail, None
        if tail is not None:
            if tail.dropped == 0:
                data, base = tail.head + data, tail.start
                tail = None
            else:
                newline = data.find(b"\n")
                if newline < 0:
                    tail.dropped += len(data)
                    self._tails[key] = tail
                    return _Framed(pa.array([], pa.binary()), np.zeros(0, np.int64)), stale
                total = len(tail.head) + tail.dropped + newline
                carried = (tail.head[: self.max_line_bytes], tail.start, total)
                data, base = data[newline + 1 :], base + newline + 1
        starts, ends, tail_start = find_lines(data)
        lines: pa.Array = slice_ranges(data, starts, ends)
        offsets = starts + base
        rest = data[tail_start:]
        if carried is not None:
            lines = pa.concat_arrays([pa.array([carried[0]], pa.binary()), lines])
            offsets = np.concatenate([np.array([carried[1]], np.int64), offsets])
        framed = _Framed(lines, offsets)
        if carried is not None:
            framed.flag("line_too_long", 0, f"line of {carried[2]} bytes cut to {self.max_line_bytes}")
        lengths = np.asarray(pc.binary_length(lines).to_numpy(zero_copy_only=False))
        too_long = np.flatnonzero(lengths > self.max_line_bytes)
        if too_long.size:
            framed.lines = pc.if_else(
                pa.array(lengths > self.max_line_bytes), pc.binary_slice(lines, 0, self.max_line_bytes), lines
            )
            for row in too_long.tolist():
                framed.flag(
                    "line_too_long", row, f"line of {lengths[row]} bytes cut to {self.max_line_bytes}"
                )
        if continues_orphan and len(lines) and carried is None:
            framed.flag("incomplete_line", 0, "rest of a line whose start was flushed earlier")
        if rest:
            self._tails[key] = _Tail(
                origin,
                base + len(data) - len(rest),
                rest[: self.max_line_bytes],
                max(0, len(rest) - self.max_line_bytes),
                now,
            )
        return framed, stale

    def _emit_tail(
        self, tail: _Tail, now: datetime, why: str, reasons: tuple[str, ...] = ("incomplete_line",)
    ) -> pa.RecordBatch:
        detail = f"unterminated line of {len(tail.head) + tail.dropped} bytes ({why})"
        flagged = {reason: ([0], [detail]) for reason in reasons}
        if tail.dropped:
            flagged["line_too_long"] = ([0], [f"kept the first {len(tail.head)} bytes"])
        return self.build(
            pa.array([tail.head], pa.binary()), np.array([tail.start]), tail.origin, now, flagged
        )

    # -- building -----------------------------------------------------------------------------------
    def build(
        self,
        lines: pa.Array,
        offsets: np.ndarray,
        origin: Origin,
        now: datetime,
        flagged: dict[str, tuple[list[int], list[str]]] | None = None,
        id_offsets: pa.Array | None = None,
    ) -> pa.RecordBatch:
        """Parse ``lines`` (binary or string) whose absolute offsets are ``offsets``; never raises."""
        n = len(lines)
        flags = Flags(n)
        for reason, (rows, details) in (flagged or {}).items():
            flags.add_rows(reason, rows, details)
        ref = now_ns(now)
        try:
            text = decode_lines(lines, flags)
            result = self.parse_text(text, origin, ref, flags)
        except Exception as exc:
            fixed = pa.array([_safe_text(v) for v in lines.to_pylist()], pa.string())
            result = Rows({"message": fixed}, flags)
            result.flags.add("internal_error", None, f"{type(exc).__name__}: {str(exc)[:300]}")
        try:
            return self._finish(result, offsets, origin, now, ref, id_offsets)
        except Exception as exc:  # a bug in a column a subclass produced: keep the lines, flagged
            fallback = Flags(n)
            fallback.add("internal_error", None, f"{type(exc).__name__}: {str(exc)[:300]}")
            text = pa.array([_safe_text(v) for v in lines.to_pylist()], pa.string())
            return self._finish(Rows({"message": text}, fallback), offsets, origin, now, ref, id_offsets)

    def _finish(
        self,
        rows: Rows,
        offsets: np.ndarray,
        origin: Origin,
        now: datetime,
        ref: int,
        id_offsets: pa.Array | None,
    ) -> pa.RecordBatch:
        cols = dict(rows.columns)
        offsets_arr = pa.array(offsets, pa.int64())
        if rows.line_index is not None:
            offsets_arr = offsets_arr.take(rows.line_index)
            if id_offsets is not None:
                id_offsets = id_offsets.take(rows.line_index)
        n = len(offsets_arr)
        flags = rows.flags
        parse_error, error_message = flags.columns()
        cols["event.parse_error"] = parse_error
        cols["error.message"] = error_message
        cols["event.id"] = event_ids(
            origin.id_prefix(), id_offsets if id_offsets is not None else offsets_arr, rows.id_suffix
        )
        cols["log.offset"] = offsets_arr
        now_scalar = pa.scalar(ref, pa.int64()).cast(TIMESTAMP)
        stamp = cols.get("@timestamp")
        cols["@timestamp"] = pa.repeat(now_scalar, n) if stamp is None else pc.fill_null(stamp, now_scalar)
        cols["event.ingested"] = pa.repeat(now_scalar, n)
        cols.setdefault("event.dataset", pa.repeat(pa.scalar(self.dataset_for(origin)), n))
        cols["event.module"] = pa.repeat(pa.scalar(self.name), n)
        node = pa.scalar(origin.node, pa.string())
        cols["host.name"] = (
            pc.fill_null(cols["host.name"], node) if "host.name" in cols else pa.repeat(node, n)
        )
        if origin.path is not None:
            cols["log.file.path"] = pa.repeat(pa.scalar(origin.path), n)
        for name, value in origin.metadata.items():
            if name in SCHEMA.names and name not in cols and value is not None:
                cols[name] = pa.repeat(pa.scalar(str(value)), n).cast(SCHEMA.field(name).type, safe=False)
        batch = conform(cols, n)
        counts = flags.counts()
        self.stats["lines"] += len(offsets)
        self.stats["events"] += n
        self.stats["errors"] += int(pc.sum(pc.is_valid(parse_error).cast(pa.int64())).as_py() or 0)
        for reason, count in counts.items():
            self.stats[f"error.{reason}"] = self.stats.get(f"error.{reason}", 0) + count
        return batch


def _safe_text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace("\x00", "\ufffd")


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return empty_batch()
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches, schema=SCHEMA).combine_chunks().to_batches()[0]
