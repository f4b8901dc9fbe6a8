"""journald JSON export (``journalctl -o json``): one JSON object per line.

Mapping: ``MESSAGE`` -> ``message`` (a string, or an array of byte values that journald uses for
non-printable content: turned back into bytes, decoded as UTF-8 with replacement and flagged when
invalid), ``PRIORITY`` -> ``log.syslog.severity.code`` and ``log.level`` (0-2 critical, 3 error,
4 warning, 5-6 info, 7 debug), ``SYSLOG_FACILITY`` -> ``log.syslog.facility.code``,
``__REALTIME_TIMESTAMP`` (microseconds) -> ``@timestamp``, ``_SYSTEMD_UNIT`` (else
``SYSLOG_IDENTIFIER``) -> ``log.syslog.appname``, ``_HOSTNAME`` -> ``host.name`` (the origin's node
when absent), ``_PID`` -> ``process.pid``. ``attributes`` keeps the whole entry as journalctl wrote it
(``__CURSOR``, ``_BOOT_ID``, ``_CMDLINE``, ...): lossless, and rewriting every object without the
mapped keys cost three times the parse itself.

kubelet and the container runtime log klog lines to the journal; those messages are upgraded with
``klog.apply_klog`` (level, source file:line, structured attributes under ``klog``).

Decoding is one ``pyarrow.json`` read per chunk when every line is an object with string fields;
otherwise one DuckDB pass over the Arrow column, and a chunk with an invalid line takes a second,
guarded pass, and the invalid lines are kept whole, flagged ``bad_json``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from kubetrail.chunk import Origin
from kubetrail.formats import _duck
from kubetrail.formats._flags import Flags
from kubetrail.formats._lineparser import DEFAULT_MAX_LINE_BYTES, LineParser, Rows, decode_lines
from kubetrail.formats.base import register_parser
from kubetrail.formats.klog import CONTROL_PLANE_COMPONENTS, apply_klog
from kubetrail.formats.syslog import SEVERITY_LEVELS
from kubetrail.schema import TIMESTAMP

__all__ = ["JournaldParser"]

_FIELDS = (
    "MESSAGE",
    "PRIORITY",
    "__REALTIME_TIMESTAMP",
    "_SYSTEMD_UNIT",
    "_HOSTNAME",
    "_PID",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_FACILITY",
)
_PATHS = "[" + ", ".join(f"'$.{f}'" for f in _FIELDS) + "]"
# One parse per line and the plainest statements: DuckDB's planning time per 1 MiB chunk (a few
# hundred journal entries) cost as much as the parsing. json_extract gives every value as JSON text;
# Arrow unquotes the plain strings, and only escaped strings and byte arrays take a second small query.
_EXTRACT_SQL = f"SELECT json_extract(line, {_PATHS}) AS j FROM t"
_EXTRACT_GUARDED_SQL = f"""SELECT ok, CASE WHEN ok THEN json_extract(line, {_PATHS}) END AS j
FROM (SELECT line, json_valid(line) AS ok FROM t)"""
_UNESCAPE_SQL = "SELECT json_extract_string(x, '$') AS v FROM t"
# a value over 255 makes TRY_CAST give a null element: such arrays are not bytes
_BYTES_SQL = """SELECT CASE WHEN len(list_filter(b, lambda v: v IS NULL)) = 0 THEN b END AS b
FROM (SELECT TRY_CAST(x::JSON AS UTINYINT[]) AS b FROM t)"""
_NULL = pa.scalar(None, pa.string())


_SCHEMA = pa.schema([(name, pa.string()) for name in _FIELDS])
_READ_OPTIONS = pa_json.ReadOptions(use_threads=False)
_PARSE_OPTIONS = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")


def _entries_fast(text: pa.StringArray) -> dict[str, pa.Array] | None:
    """Every field of every line with Arrow's JSON reader, or None when the chunk needs DuckDB.

    The reader (one call per chunk, no statement planning) is several times cheaper than a DuckDB
    query for the common chunk: every line an object whose mapped fields are strings. A chunk with
    anything else (a MESSAGE byte array, a number, an invalid or blank line) fails the read as a
    whole or gives another row count, and takes the general path.
    """
    if text.null_count:
        return None
    lines = pc.binary_join_element_wise(text, "\n", "")
    data = lines.buffers()[2]
    if data is None:
        return None
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    body = data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    options = _READ_OPTIONS
    if body.size > options.block_size:  # one block: a line must never straddle two
        options = pa_json.ReadOptions(use_threads=False, block_size=body.size + 1)
    try:
        table = pa_json.read_json(pa.BufferReader(body), options, _PARSE_OPTIONS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(text):
        return None
    return {name: table.column(name).combine_chunks() for name in _FIELDS}


def _entries(text: pa.StringArray) -> tuple[pa.Array, dict[str, pa.Array], pa.Array]:
    """(valid JSON mask, field -> value (strings unquoted, other JSON as text), MESSAGE-is-array mask)."""
    fast = _entries_fast(text)
    if fast is not None:
        n = len(text)
        return pa.array(np.ones(n, dtype=bool)), fast, pa.array(np.zeros(n, dtype=bool))
    table = pa.table({"line": text})
    try:
        j = _duck.run(_EXTRACT_SQL, t=table)["j"].combine_chunks()
        ok = pa.array(np.ones(len(text), dtype=bool))
    except Exception:  # an invalid line fails the bulk pass: take the guarded one
        out = _duck.run(_EXTRACT_GUARDED_SQL, t=table)
        j, ok = out["j"].combine_chunks(), pc.fill_null(out["ok"].combine_chunks(), False)
    raw = {name: pc.list_element(j, i).cast(pa.string()) for i, name in enumerate(_FIELDS)}
    escaped: list[tuple[str, pa.Array]] = []
    values: dict[str, pa.Array] = {}
    for name, text_value in raw.items():
        is_string = pc.fill_null(pc.starts_with(text_value, '"'), False)
        has_escape = pc.and_(is_string, pc.fill_null(pc.match_substring(text_value, "\\"), False))
        plain = pc.and_(is_string, pc.invert(has_escape))
        other = pc.if_else(pc.equal(text_value, "null"), _NULL, text_value)
        values[name] = pc.if_else(plain, pc.utf8_slice_codeunits(text_value, 1, -1), other)
        if pc.any(has_escape).as_py():
            escaped.append((name, has_escape))
    if escaped:
        texts = pa.concat_arrays([raw[name].filter(mask) for name, mask in escaped])
        unescaped = _duck.run(_UNESCAPE_SQL, t=pa.table({"x": texts}))["v"].combine_chunks()
        start = 0
        for name, mask in escaped:
            count = int(pc.sum(mask.cast(pa.int64())).as_py() or 0)
            values[name] = pc.replace_with_mask(values[name], mask, unescaped.slice(start, count))
            start += count
    is_array = pc.fill_null(pc.starts_with(raw["MESSAGE"], "["), False)
    return ok, values, is_array


_CONTROL_PLANE = "(" + "|".join(CONTROL_PLANE_COMPONENTS) + ")"


def _bytes_to_binary(lists: pa.Array) -> pa.Array:
    """list<uint8> -> binary with the same rows: the flat values already are the bytes."""
    lists = lists.cast(pa.list_(pa.uint8()))
    if len(lists) == 0:
        return pa.array([], pa.binary())
    offsets = pc.subtract(lists.offsets, lists.offsets[0]).cast(pa.int32())
    flat = pc.fill_null(lists.flatten(), 0)
    values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint8).tobytes()
    binary = pa.BinaryArray.from_buffers(
        pa.binary(), len(lists), [None, offsets.buffers()[1], pa.py_buffer(values)]
    )
    return pc.if_else(lists.is_valid(), binary, pa.scalar(None, pa.binary()))


@register_parser("journald")
class JournaldParser(LineParser):
    """``journalctl -o json`` lines (the agent's journal reader ships these)."""

    def __init__(
        self,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        tail_timeout_secs: float = 30.0,
        klog_messages: bool = True,
    ) -> None:
        super().__init__(max_line_bytes=max_line_bytes, tail_timeout_secs=tail_timeout_secs)
        self.klog_messages = klog_messages

    def parse_text(self, text: pa.StringArray, origin: Origin, now_ns: int, flags: Flags) -> Rows:
        if len(text) == 0:
            return Rows({}, flags)
        valid, field, is_array = _entries(text)
        obj = pc.and_(valid, pc.starts_with(pc.utf8_ltrim_whitespace(text), "{"))
        empty = pc.equal(pc.utf8_length(text), 0)
        flags.add("empty_line", empty, "empty line")
        flags.add("bad_json", pc.and_(pc.invert(valid), pc.invert(empty)), "not JSON; kept whole")
        flags.add("bad_json", pc.and_(valid, pc.invert(obj)), "JSON but not an object; kept whole")
        message = field["MESSAGE"]
        if pc.any(is_array).as_py():
            arrays = pa.table({"x": message.filter(is_array)})
            lists = _duck.run(_BYTES_SQL, t=arrays)["b"].combine_chunks()
            raw_bytes = pc.replace_with_mask(
                pa.nulls(len(text), pa.binary()), is_array, _bytes_to_binary(lists)
            )
            unconvertible = pc.and_(is_array, pc.is_null(raw_bytes))
            flags.add("bad_field", unconvertible, "MESSAGE array is not a list of byte values; kept as JSON")
            decoded = decode_lines(pc.fill_null(raw_bytes, b""), flags)
            message = pc.if_else(pc.and_(is_array, pc.is_valid(raw_bytes)), decoded, message)
        priority = pc.cast(_digits(field["PRIORITY"]), pa.int64())
        bad_priority = pc.or_(
            pc.and_(pc.is_valid(field["PRIORITY"]), pc.is_null(priority)), pc.greater(priority, 7)
        )
        flags.add("bad_field", bad_priority, "PRIORITY is not 0-7")
        priority = pc.if_else(bad_priority, pa.scalar(None, pa.int64()), priority)
        stamp_us = pc.cast(_digits(field["__REALTIME_TIMESTAMP"]), pa.int64())
        stamp_us = pc.if_else(pc.less(stamp_us, 9_000_000_000_000_000), stamp_us, pa.scalar(None, pa.int64()))
        bad_stamp = pc.and_(pc.is_valid(field["__REALTIME_TIMESTAMP"]), pc.is_null(stamp_us))
        flags.add("bad_timestamp", bad_stamp, "__REALTIME_TIMESTAMP is not microseconds; receive time used")
        timestamp = pc.multiply(stamp_us, 1000).cast(TIMESTAMP)
        pid = pc.cast(_digits(field["_PID"]), pa.int64())
        unit = field["_SYSTEMD_UNIT"]
        columns: dict[str, pa.Array] = {
            "message": pc.if_else(obj, message, text),
            "@timestamp": timestamp,
            "log.syslog.severity.code": priority,
            "log.level": pc.take(SEVERITY_LEVELS, priority),
            "log.syslog.facility.code": pc.cast(_digits(field["SYSLOG_FACILITY"]), pa.int64()),
            "log.syslog.appname": pc.coalesce(unit, field["SYSLOG_IDENTIFIER"]),
            "host.name": field["_HOSTNAME"],
            "process.pid": pid,
            "attributes": pc.if_else(obj, text, pa.scalar(None, pa.string())),
            "event.dataset": pc.if_else(
                pc.fill_null(pc.match_substring_regex(unit, _CONTROL_PLANE), False), "controlplane", "node"
            ),
        }
        if self.klog_messages:
            ref = np.asarray(
                pc.fill_null(timestamp.cast(pa.int64()), now_ns).to_numpy(zero_copy_only=False),
                dtype=np.int64,
            )
            columns = apply_klog(columns, ref, klog_key="klog")
        return Rows(columns, flags)


def _digits(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.match_substring_regex(arr, r"^\d{1,18}$"), arr, pa.scalar(None, pa.string()))
