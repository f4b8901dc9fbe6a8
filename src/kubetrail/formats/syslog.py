"""syslog: RFC 5424 and RFC 3164 messages, from a receiver or from node files (/var/log/syslog).

* RFC 5424 ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG``: the timestamp keeps its zone; a
  UTF-8 BOM before MSG is dropped; MSGID, a non-numeric PROCID and the structured data (as
  ``{"id": {"param": "value"}}``) go to ``attributes`` under their ECS names
  (``log.syslog.msgid``, ``log.syslog.procid``, ``log.syslog.structured_data``).
* RFC 3164 ``<PRI>Mmm dd hh:mm:ss host tag[pid]: msg``, with or without PRI (files written by rsyslog
  have none) and also with an RFC 3339 timestamp instead (rsyslog's file format on newer distros).
  The year is inferred from the receive time like klog's; the time is read as UTC.

PRI gives ``log.syslog.facility.code`` / ``severity.code``; severity gives ``log.level``. Each line is
sniffed (``<PRI>1 `` means 5424) and both shapes are extracted with one RE2 kernel each.
``parse_syslog_messages`` parses messages a receiver already framed (TCP octet counting may carry
newlines inside a message).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Origin
from kubetrail.formats import _duck
from kubetrail.formats._flags import Flags
from kubetrail.formats._lineparser import LineParser, Rows
from kubetrail.formats._sd import structured_data_json
from kubetrail.formats._text import extract_head
from kubetrail.formats._times import (
    fraction_to_ns,
    infer_year,
    month_numbers,
    ns_to_timestamp,
    parse_rfc3339,
    to_ns,
)
from kubetrail.formats.base import register_parser

__all__ = ["SEVERITY_LEVELS", "SyslogParser", "parse_syslog_messages"]

SEVERITY_LEVELS = pa.array(["critical", "critical", "critical", "error", "warning", "info", "info", "debug"])

# Header patterns only: the message is the rest of the line (see _text.extract_head).
HEAD5424 = (
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r'(?P<sd>-|(?:\[(?:[^"\]\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: |$)'
)
HEAD3164 = (
    r"(?:<(?P<pri>\d{1,3})>)?(?:(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) "
    r"(?P<time>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?))\s+"
    r"(?P<host>[^\s:\[]+)\s+"
)
TAG3164 = r"(?P<tag>[^:\[\s]{1,64})(?:\[(?P<pid>[^\]]*)\])?:(?: |$)"
_SD_ELEMENT = r'\[([^\s\]="]+)((?:\s+[^\s=\]"]+="(?:[^"\\]|\\.)*")*)\s*\]'
_SD_PARAM = r'([^\s=\]"]+)="((?:[^"\\]|\\.)*)"'
_SD_ESCAPE = r'\\(["\\\]])'
_SD_SQL = """
SELECT '{' || array_to_string(list_transform(regexp_extract_all(sd, $element, ['id', 'params']), lambda e:
    to_json(e.id)::VARCHAR || ':{' || array_to_string(list_transform(
      regexp_extract_all(e.params, $param, ['k', 'v']), lambda p: to_json(p.k)::VARCHAR || ':' || to_json(
        CASE WHEN strpos(p.v, chr(92)) = 0 THEN p.v ELSE regexp_replace(p.v, $escape, '\\1', 'g') END
      )::VARCHAR), ',') || '}'), ',') || '}' AS sd
FROM t
"""


def _group(parts: pa.Array, name: str) -> pa.Array:
    """A regex group; a group that did not take part (extract_regex gives '') -> null."""
    value = pc.struct_field(parts, name)
    return pc.if_else(pc.equal(value, ""), pa.scalar(None, pa.string()), value)


def _nil(arr: pa.Array) -> pa.Array:
    """RFC 5424 NILVALUE '-' -> null."""
    return pc.if_else(pc.equal(arr, "-"), pa.scalar(None, pa.string()), arr)


def _numeric(arr: pa.Array) -> pa.Array:
    """Digits -> int64, anything else -> null."""
    digits = pc.match_substring_regex(arr, r"^\d{1,18}$")
    return pc.cast(pc.if_else(digits, arr, pa.scalar(None, pa.string())), pa.int64())


def _pri_columns(pri_text: pa.Array, flags: Flags, rows: pa.Array) -> dict[str, pa.Array]:
    pri = pc.cast(pri_text, pa.int64())
    bad = pc.and_(rows, pc.greater(pri, 191))
    flags.add("bad_pri", bad, "PRI above 191; facility and severity left empty")
    pri = pc.if_else(bad, pa.scalar(None, pa.int64()), pri)
    severity = pc.bit_wise_and(pri, 7)
    return {
        "log.syslog.facility.code": pc.divide(pri, 8),
        "log.syslog.severity.code": severity,
        "log.level": pc.take(SEVERITY_LEVELS, severity),
    }


def _rfc5424(text: pa.Array, flags: Flags) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of lines sniffed as RFC 5424, and which of them really are."""
    parts, rows, rest = extract_head(text, HEAD5424)

    def part(name: str) -> pa.Array:
        return _group(parts, name)

    ts_text = _nil(part("ts"))
    ts, bad_ts = parse_rfc3339(ts_text)
    flags.add("bad_timestamp", pc.and_(rows, bad_ts), "RFC 5424 TIMESTAMP is not RFC 3339; receive time used")
    procid = _nil(part("procid"))
    pid = _numeric(procid)
    msg = pc.if_else(pc.starts_with(rest, "\ufeff"), pc.utf8_slice_codeunits(rest, 1), rest)
    cols = {
        "@timestamp": ts,
        "host.name": _nil(part("host")),
        "log.syslog.appname": _nil(part("app")),
        "process.pid": pid,
        "message": msg,
        **_pri_columns(part("pri"), flags, rows),
    }
    msgid = _nil(part("msgid"))
    odd_procid = pc.if_else(pc.is_null(pid), procid, pa.scalar(None, pa.string()))
    sd = _nil(part("sd"))
    pieces = [_json_member("log.syslog.msgid", msgid), _json_member("log.syslog.procid", odd_procid)]
    has_sd = pc.fill_null(pc.is_valid(sd), False)
    if pc.any(has_sd).as_py():
        present = sd.filter(has_sd)
        decoded = structured_data_json(present)
        if decoded.null_count:  # control bytes: the few such rows through the (slower) SQL
            redo = pc.is_null(decoded)
            params = {"element": _SD_ELEMENT, "param": _SD_PARAM, "escape": _SD_ESCAPE}
            out = _duck.run(_SD_SQL, params, t=pa.table({"sd": present.filter(redo)}))
            decoded = pc.replace_with_mask(decoded, redo, out["sd"].combine_chunks())
        sd_json = pc.replace_with_mask(pa.nulls(len(text), pa.string()), has_sd, decoded)
        pieces.append(pc.binary_join_element_wise('"log.syslog.structured_data":', sd_json, ""))
    members = pieces[0]
    for piece in pieces[1:]:
        members = pc.coalesce(pc.binary_join_element_wise(members, piece, ","), members, piece)
    cols["attributes"] = pc.binary_join_element_wise("{", members, "}", "")
    return cols, rows


def _json_member(key: str, value: pa.Array) -> pa.Array:
    """``"key":"value"`` (null when value is null); syslog header fields are printable ASCII."""
    escaped = pc.replace_substring(pc.replace_substring(value, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise(f'"{key}":"', escaped, '"', "")


def _rfc3164(text: pa.Array, flags: Flags, reference_ns: np.ndarray) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of lines sniffed as RFC 3164 (or files without PRI), and which of them really are."""
    parts, rows, rest = extract_head(text, HEAD3164)
    tags, _, message = extract_head(rest, TAG3164)

    def part(name: str) -> pa.Array:
        return _group(parts, name)

    def ints(name: str) -> np.ndarray:
        return to_ns(pc.cast(part(name), pa.int64()))

    def clock(start: int) -> np.ndarray:
        return to_ns(pc.cast(pc.utf8_slice_codeunits(part("time"), start, start + 2), pa.int64()))

    has_bsd_time = pc.is_valid(part("mon"))
    nanos = fraction_to_ns(part("frac"))
    ts_ns, valid = infer_year(
        month_numbers(part("mon")), ints("day"), clock(0), clock(3), clock(6), nanos, reference_ns
    )
    bsd_ok = pc.and_(has_bsd_time, pa.array(valid))
    iso_ts, iso_bad = parse_rfc3339(part("iso"))
    ts = pc.coalesce(
        pc.if_else(bsd_ok, ns_to_timestamp(ts_ns), pa.scalar(None, ns_to_timestamp(ts_ns).type)), iso_ts
    )
    bad = pc.or_(pc.and_(has_bsd_time, pc.invert(pa.array(valid))), iso_bad)
    flags.add("bad_timestamp", pc.and_(rows, bad), "impossible syslog date/time; receive time used")
    tag = pc.if_else(rows, _group(tags, "tag"), pa.scalar(None, pa.string()))
    pid_text = pc.if_else(rows, _group(tags, "pid"), pa.scalar(None, pa.string()))
    cols: dict[str, pa.Array] = {
        "@timestamp": ts,
        "host.name": part("host"),
        "log.syslog.appname": tag,
        "process.pid": _numeric(pid_text),
        "message": message,
        **_pri_columns(part("pri"), flags, rows),
    }
    odd_pid = pc.and_(pc.is_null(cols["process.pid"]), pc.invert(pc.equal(pc.fill_null(pid_text, ""), "")))
    if pc.any(pc.fill_null(pc.and_(rows, odd_pid), False)).as_py():
        procid = pc.binary_join_element_wise(
            '{"log.syslog.procid":"', pc.replace_substring(pid_text, '"', "'"), '"}', ""
        )
        cols["attributes"] = pc.if_else(odd_pid, procid, pa.scalar(None, pa.string()))
    return cols, rows


def _mask_np(mask: pa.Array) -> np.ndarray:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def syslog_columns(text: pa.StringArray, reference_ns: np.ndarray, flags: Flags) -> dict[str, pa.Array]:
    """Syslog fields of every row (5424 or 3164, sniffed per row); flags rows that match neither."""
    text = pc.utf8_rtrim(text, characters="\r\n")
    n = len(text)
    if n == 0:
        return {"message": text}
    is5424 = pc.fill_null(pc.starts_with(text, "<"), False)
    if pc.any(is5424).as_py():
        is5424 = pc.fill_null(pc.match_substring_regex(text, r"^<\d{1,3}>1 "), False)
    not5424 = pc.invert(is5424)
    reference3164 = reference_ns[_mask_np(not5424)]
    shapes: list[tuple[pa.Array, Callable[[pa.Array, Flags], tuple[dict[str, pa.Array], pa.Array]]]] = [
        (is5424, _rfc5424),
        (not5424, lambda sub, sub_flags: _rfc3164(sub, sub_flags, reference3164)),
    ]
    cols: dict[str, pa.Array] = {}
    matched = pa.array(np.zeros(n, dtype=bool))
    for mask, extract in shapes:
        count = int(pc.sum(mask.cast(pa.int64())).as_py() or 0)
        if count == 0:
            continue
        whole = count == n
        sub_flags = Flags(count)
        sub_cols, sub_matched = extract(text if whole else text.filter(mask), sub_flags)
        if whole:
            flags.extend(sub_flags)
            cols, matched = sub_cols, sub_matched
            break
        flags.scatter(sub_flags, mask)
        matched = pc.replace_with_mask(matched, mask, sub_matched)
        for name, values in sub_cols.items():
            base = cols.get(name, pa.nulls(n, values.type))
            cols[name] = pc.replace_with_mask(base, mask, values.cast(base.type))
    matched = pc.fill_null(matched, False)
    empty = pc.equal(pc.utf8_length(text), 0)
    flags.add("empty_line", empty, "empty line")
    flags.add(
        "bad_format",
        pc.and_(pc.invert(matched), pc.invert(empty)),
        "not an RFC 5424/3164 message; kept whole",
    )
    cols["message"] = pc.if_else(matched, pc.fill_null(cols["message"], ""), text)
    return cols


@register_parser("syslog")
class SyslogParser(LineParser):
    """RFC 5424 / RFC 3164 lines (sniffed per line)."""

    def dataset_for(self, origin: Origin) -> str:
        return "syslog" if origin.receiver else "node"

    def parse_text(self, text: pa.StringArray, origin: Origin, now_ns: int, flags: Flags) -> Rows:
        return Rows(syslog_columns(text, np.full(len(text), now_ns, dtype=np.int64), flags), flags)


@register_parser("syslog5424")
class Syslog5424Parser(SyslogParser):
    """Alias of ``syslog`` for configs that name the RFC (the shape is still sniffed per line)."""


@register_parser("syslog3164")
class Syslog3164Parser(SyslogParser):
    """Alias of ``syslog`` for configs that name the RFC (the shape is still sniffed per line)."""


def parse_syslog_messages(
    messages: pa.Array,
    origin: Origin,
    now: datetime | None = None,
    *,
    offsets: pa.Array | None = None,
    parser: SyslogParser | None = None,
) -> pa.RecordBatch:
    """Parse messages a receiver framed already (one array element per message; never raises).

    ``event.id`` is ``origin.id_prefix()-<n>`` with n = ``origin.offset`` + the message's index, or
    the given ``offsets`` (e.g. byte positions in the TCP stream). Pass ``parser`` to count into its
    ``stats``. A trailing LF / CRLF of a message is dropped.
    """
    parser = parser or SyslogParser()
    if offsets is None:
        base = np.arange(len(messages), dtype=np.int64) + origin.offset
    else:
        base = np.asarray(offsets.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if not (pa.types.is_binary(messages.type) or pa.types.is_string(messages.type)):
        messages = messages.cast(pa.binary())
    messages = pc.fill_null(
        messages, pa.scalar(b"" if pa.types.is_binary(messages.type) else "", messages.type)
    )
    return parser.build(messages, base, origin, now or datetime.now(UTC))
