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

Decoding is one DuckDB pass over the Arrow column; a chunk with an invalid line takes a second,
guarded pass, and the invalid lines are kept whole, flagged ``bad_json``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
# One parse per line: json_extract with every path gives the values as JSON text; the strings
# among them are unquoted from that small text (json_type & co. would parse the line again each).
_OUTER = """SELECT ok, obj,
  list_transform(j, lambda x: CASE WHEN x IS NULL OR x::VARCHAR = 'null' THEN NULL
                                   WHEN left(x::VARCHAR, 1) = '"' THEN json_extract_string(x, '$')
                                   ELSE x::VARCHAR END) AS v,
  CASE WHEN left(j[1]::VARCHAR, 1) = '[' THEN 'ARRAY' END AS mtype,
  -- a value over 255 makes TRY_CAST give a null element: such arrays are not bytes
  CASE WHEN left(j[1]::VARCHAR, 1) = '['
            AND len(list_filter(TRY_CAST(j[1] AS UTINYINT[]), lambda b: b IS NULL)) = 0
       THEN TRY_CAST(j[1] AS UTINYINT[]) END AS bytes"""
_FAST_SQL = f"""{_OUTER} FROM (
  SELECT true AS ok, left(ltrim(line), 1) = '{{' AS obj, json_extract(line, {_PATHS}) AS j FROM t)"""
_GUARDED_SQL = f"""{_OUTER} FROM (
  SELECT ok, obj, CASE WHEN obj THEN json_extract(line, {_PATHS}) END AS j
  FROM (SELECT line, ok, ok AND left(ltrim(line), 1) = '{{' AS obj
        FROM (SELECT line, json_valid(line) AS ok FROM t)))"""
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
        table = pa.table({"line": text})
        try:
            out = _duck.run(_FAST_SQL, t=table)
        except Exception:  # an invalid line fails the bulk pass: take the guarded one
            out = _duck.run(_GUARDED_SQL, t=table)
        obj = pc.fill_null(out["obj"].combine_chunks(), False)
        valid = pc.fill_null(out["ok"].combine_chunks(), False)
        empty = pc.equal(pc.utf8_length(text), 0)
        flags.add("empty_line", empty, "empty line")
        flags.add("bad_json", pc.and_(pc.invert(valid), pc.invert(empty)), "not JSON; kept whole")
        flags.add("bad_json", pc.and_(valid, pc.invert(obj)), "JSON but not an object; kept whole")
        v = out["v"].combine_chunks()
        field = {name: pc.list_element(v, i) for i, name in enumerate(_FIELDS)}
        mtype = out["mtype"].combine_chunks()
        is_array = pc.fill_null(pc.equal(mtype, "ARRAY"), False)
        message = field["MESSAGE"]
        if pc.any(is_array).as_py():
            raw_bytes = _bytes_to_binary(out["bytes"].combine_chunks())
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
