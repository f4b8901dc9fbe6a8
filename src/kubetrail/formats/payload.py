"""Structure inside container messages: JSON objects, logfmt, access logs, levels in plain text.

Rows are classified with cheap masks (first byte, anchored RE2 matches), and each kind is decoded
for its subset in bulk:

* **JSON** (``{...}``): one DuckDB query over the Arrow column pulls the common keys (level / msg /
  error / stack / logger, several spellings each); ``message`` becomes the payload's message when it
  has one and ``attributes`` is the payload object verbatim, so nothing of the raw line is lost.
* **logfmt** (``level=info msg="..." k=v``, a whole line of pairs): one RE2 replace turns each line
  into a JSON object (values as strings), which then goes through the JSON query above;
  ``attributes`` is that object plus ``event.original`` = the raw line.
* **access logs** (nginx / apache common and combined), split on quotes and spaces: ``source.ip``,
  ``user.name``, ``http.request.method``, ``url.original``, ``http.response.status_code``,
  ``http.response.body.bytes``, ``user_agent.original``; ``message`` stays the raw line.
* **plain text**: a level token (``ERROR``, ``WARN``, ``INFO``, ``DEBUG``, ... or a klog-style
  ``E0505`` prefix) in the first 96 bytes sets ``log.level``.

A line that only looks structured (starts with ``{`` but is not valid JSON) is treated as plain text,
not flagged: free text may contain braces.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from collections.abc import Mapping

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.formats.kernels import cast_or_bisect, first_bytes, from_np, scatter, slice_ranges, to_np

__all__ = ["LEVELS", "PAYLOAD_KINDS", "extract_payload", "logfmt_to_json", "normalize_level"]

PAYLOAD_KINDS = frozenset({"json", "logfmt", "access", "plain"})

# raw level spelling (lower case) -> normalised log.level
LEVELS: Mapping[str, str] = {
    **dict.fromkeys(["trace", "trc", "10", "finest", "finer"], "trace"),
    **dict.fromkeys(["debug", "dbg", "d", "20", "fine", "verbose", "config"], "debug"),
    **dict.fromkeys(["info", "information", "informational", "inf", "i", "30", "notice"], "info"),
    **dict.fromkeys(["warn", "warning", "wrn", "w", "40"], "warning"),
    **dict.fromkeys(["error", "err", "eror", "e", "50", "severe"], "error"),
    **dict.fromkeys(
        ["fatal", "critical", "crit", "f", "60", "panic", "dpanic", "alert", "emerg", "emergency"], "critical"
    ),
}
_LEVEL_KEYS = pa.array(list(LEVELS), pa.string())
_LEVEL_VALUES = pa.array(list(LEVELS.values()), pa.string())

_KEY = r"[A-Za-z_][\w.\-/@]*"
_VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^ "\\=]*)'
LOGFMT_LINE = rf"^{_KEY}={_VALUE}(?: +{_KEY}={_VALUE})* *$"
_LOGFMT_PAIR = rf'({_KEY})=(?:"((?:[^"\\]|\\.)*)"|([^ "\\=]*))(?: +|$)'
ACCESS_PREFIX = r'^[0-9A-Fa-f.:]+ \S+ \S+ \[[^\]]+\] "'
_PLAIN_LEVEL = (
    r"(?:^(?P<klog>[IWEF])\d{4} \d\d:\d\d)|\b(?P<word>TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|"
    r"FATAL|CRITICAL|PANIC|Trace|Debug|Info|Warn|Warning|Error|Fatal|Critical)\b"
)
_PLAIN_SCAN_BYTES = 96

# Paths pulled out of every JSON payload, in one ``json_extract_string`` call per chunk; the fields
# below are the coalesced positions in that list (Arrow kernels do the coalescing: a smaller query
# binds faster, which matters more than anything else at one query per chunk).
_PATHS = (
    "$.level", "$.lvl", "$.severity", '$."log.level"', "$.log.level",  # 0-4 level
    "$.msg", "$.message", "$.log",  # 5-7 message
    "$.error", "$.err", "$.exception",  # 8-10 error
    "$.stack", "$.stacktrace", "$.stack_trace",  # 11-13 stack
    "$.logger", '$."error.type"',  # 14-15
)  # fmt: skip
_FIELDS = {
    "log.level": (0, 1, 2, 3, 4),
    "error.message": (8, 9, 10),
    "error.stack_trace": (11, 12, 13),
    "log.logger": (14,),
    "error.type": (15,),
}
_PATH_LIST = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in _PATHS) + "]"
# ``try`` (DuckDB >= 1.3) turns a malformed row into NULL without a second parse for json_valid;
# ``payload_tbl`` is found by DuckDB's replacement scan (cheaper than register/unregister)
_QUERIES = {
    True: f"SELECT try(json_extract_string(m, {_PATH_LIST})) AS v, to_json(raw) AS raw FROM payload_tbl",
    False: f"SELECT json_extract_string(CASE WHEN json_valid(m) THEN m END, {_PATH_LIST}) AS v, "
    "to_json(raw) AS raw FROM payload_tbl",
}
_HAS_TRY = [True]
_local = threading.local()


def _duckdb() -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        con.execute("SET threads=1")
        _local.con = con
    return con


def _query(payload_tbl: pa.Table) -> pa.Table:
    """Run the extraction over ``payload_tbl`` (columns ``m`` and ``raw``)."""
    con = _duckdb()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # execute() binds faster than sql(); the Arrow copy is small
        try:
            table: pa.Table = con.execute(_QUERIES[_HAS_TRY[0]]).to_arrow_table()
        except duckdb.Error:
            if not _HAS_TRY[0]:
                raise
            _HAS_TRY[0] = False  # an older DuckDB without try(): validate first instead
            table = con.execute(_QUERIES[False]).to_arrow_table()
    return table


def _byte_class(chars: str) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=bool)
    table[np.frombuffer(chars.encode(), dtype=np.uint8)] = True
    return table


_LOGFMT_FIRST = _byte_class("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_ACCESS_FIRST = _byte_class("0123456789abcdefABCDEF:")


def _pick(values: pa.Array, positions: tuple[int, ...]) -> pa.Array:
    picked = [pc.list_element(values, i) for i in positions]
    return picked[0] if len(picked) == 1 else pc.coalesce(*picked)


def normalize_level(raw: pa.Array) -> pa.Array:
    """Map level spellings (any case, numeric bunyan/pino levels) to the schema's six levels."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(raw.cast(pa.string())))
    return _LEVEL_VALUES.take(pc.index_in(lowered, value_set=_LEVEL_KEYS))


def logfmt_to_json(lines: pa.Array) -> pa.Array:
    """logfmt lines (already known to be whole lines of pairs) -> JSON objects with string values."""
    pairs = pc.replace_substring_regex(lines, _LOGFMT_PAIR, r'"\1":"\2\3",')
    return pc.binary_join_element_wise("{", pc.utf8_rtrim(pairs, characters=","), "}", "")


def _merge(columns: dict[str, pa.Array], name: str, values: pa.Array) -> None:
    """Fill ``name`` with ``values`` where it is still null."""
    current = columns.get(name)
    columns[name] = values if current is None else pc.coalesce(current, values)


def extract_payload(
    message: pa.StringArray,
    stats: Counter[str] | None = None,
    kinds: frozenset[str] = PAYLOAD_KINDS,
) -> dict[str, pa.Array]:
    """Typed columns and ``attributes`` parsed out of each message (``message`` may be replaced).

    ``kinds`` limits the detection (a pod annotated ``logfmt`` is never read as JSON).
    """
    n = len(message)
    columns: dict[str, pa.Array] = {}
    if n == 0:
        return columns
    msg = message.fill_null("") if message.null_count else message
    if "json" in kinds:
        is_json = to_np(pc.and_(pc.starts_with(msg, "{"), pc.ends_with(msg, "}")), False)
    else:
        is_json = np.zeros(n, dtype=bool)
    is_logfmt = np.zeros(n, dtype=bool)
    first = first_bytes(msg)
    # a logfmt line starts with a key: the full-line regex runs only where the first byte allows it
    rest_rows = np.flatnonzero(~is_json & _LOGFMT_FIRST[first])
    if rest_rows.size and "logfmt" in kinds:
        rest_msg = msg.take(from_np(rest_rows))
        is_logfmt[rest_rows] = to_np(pc.match_substring_regex(rest_msg, LOGFMT_LINE), False)
    structured_rows = np.flatnonzero(is_json | is_logfmt)
    plain = ~(is_json | is_logfmt)
    if structured_rows.size:
        sub = msg.take(from_np(structured_rows))
        sub_logfmt = from_np(is_logfmt[structured_rows])
        payload = sub
        logfmt_local = np.flatnonzero(is_logfmt[structured_rows])
        if logfmt_local.size:
            converted = logfmt_to_json(sub.take(from_np(logfmt_local)))
            payload = pc.coalesce(scatter(converted, logfmt_local, len(sub)), sub)
            raw = pc.if_else(sub_logfmt, sub, pa.nulls(len(sub), pa.string()))
        else:
            raw = pa.nulls(len(sub), pa.string())
        out = _query(pa.table({"m": payload, "raw": raw}))
        values = out.column("v").combine_chunks()
        ok = to_np(values.is_valid(), False)
        plain[structured_rows[~ok]] = True
        good = np.flatnonzero(ok)
        rows = structured_rows[good]
        if rows.size:
            take = from_np(good)
            values = values.take(take)
            for name, positions in _FIELDS.items():
                field = _pick(values, positions)
                if name == "log.level":
                    field = normalize_level(field)
                _merge(columns, name, scatter(field, rows, n))
            log = pc.list_element(values, 7)
            text = pc.coalesce(
                pc.list_element(values, 5),
                pc.list_element(values, 6),
                pc.if_else(pc.starts_with(log, "{"), pa.scalar(None, pa.string()), log),  # not an object
            )
            columns["message"] = pc.coalesce(scatter(text, rows, n), message)
            attrs = payload.take(take)  # JSON rows: the object verbatim
            raw_json = out.column("raw").combine_chunks().take(take)
            if logfmt_local.size:  # logfmt rows: the pairs plus the raw line as event.original
                original = pc.binary_join_element_wise(
                    pc.utf8_rtrim(attrs, characters="}"), ',"event.original":', raw_json, "}", ""
                )
                attrs = pc.coalesce(original, attrs)
            columns["attributes"] = scatter(attrs, rows, n)
        if stats is not None:
            stats["payload.json"] += int(np.count_nonzero(is_json[rows])) if rows.size else 0
            stats["payload.logfmt"] += int(np.count_nonzero(is_logfmt[rows])) if rows.size else 0
    plain_rows = np.flatnonzero(plain)
    if plain_rows.size:
        plain_msg = msg.take(from_np(plain_rows))
        access_mask = np.zeros(plain_rows.size, dtype=bool)
        maybe_access = np.flatnonzero(_ACCESS_FIRST[first[plain_rows]])  # an address comes first
        if "access" in kinds and maybe_access.size:
            candidates = plain_msg.take(from_np(maybe_access))
            access_mask[maybe_access] = to_np(pc.match_substring_regex(candidates, ACCESS_PREFIX), False)
        access_local = np.flatnonzero(access_mask)
        if access_local.size:
            _access(columns, plain_msg.take(from_np(access_local)), plain_rows[access_local], n, stats)
        text_local = np.flatnonzero(~access_mask)
        if text_local.size and "plain" in kinds:
            head = _head(plain_msg.take(from_np(text_local)), _PLAIN_SCAN_BYTES)
            found = pc.extract_regex(head, _PLAIN_LEVEL)
            klog_level = found.field("klog").cast(pa.string())
            token = pc.coalesce(
                pc.if_else(pc.equal(klog_level, ""), None, klog_level),
                found.field("word").cast(pa.string()),
            )
            _merge(columns, "log.level", scatter(normalize_level(token), plain_rows[text_local], n))
    return columns


def _head(values: pa.Array, nbytes: int) -> pa.Array:
    """The first ``nbytes`` bytes of each value as binary (one ``take``; no UTF-8 decoding)."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + n + 1]
    starts = offsets[:-1].astype(np.int64)
    ends = np.minimum(offsets[1:].astype(np.int64), starts + nbytes)
    data = values.buffers()[2]
    return slice_ranges(data if data is not None else b"", starts, ends)


def _nonempty(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.or_(pc.equal(values, "-"), pc.equal(values, "")), None, values)


def _split(values: pa.Array, sep: str, parts: int) -> list[pa.Array]:
    """``parts`` fields of ``values`` split on ``sep`` (padded, so short values give empty fields)."""
    padded = pc.binary_join_element_wise(values, sep * parts, "")
    lists = pc.split_pattern(padded, sep, max_splits=parts)
    return [pc.list_element(lists, i) for i in range(parts)]


def _access(
    columns: dict[str, pa.Array],
    lines: pa.Array,
    rows: npt.NDArray[np.int64],
    n: int,
    stats: Counter[str] | None,
) -> None:
    """Common / combined access logs, split on quotes and spaces (cheaper than a capturing regex).

    ``ip ident user [time] "METHOD URL PROTO" STATUS BYTES "REFERER" "USER-AGENT" ...``
    """
    pre, request, middle, _, _, agent = _split(lines, '"', 6)[:6]
    ip, _, user = _split(pre, " ", 3)[:3]
    method, url = _split(request, " ", 2)
    status_text, size_text = _split(pc.utf8_trim_whitespace(middle), " ", 2)
    status, _ = cast_or_bisect(status_text, pa.int32())
    ok = pc.and_(pc.greater_equal(status, 100), pc.less(status, 600)).fill_null(False)
    keep = np.flatnonzero(to_np(ok, False))
    if stats is not None:
        stats["payload.access"] += int(keep.size)
    if keep.size == 0:
        return
    take = from_np(keep)
    rows = rows[keep]
    status = status.take(take)
    size, _ = cast_or_bisect(_nonempty(pc.utf8_trim(size_text.take(take), " ")), pa.int64())
    level = pc.if_else(
        pc.greater_equal(status, 500), "error", pc.if_else(pc.greater_equal(status, 400), "warning", "info")
    )
    _merge(columns, "source.ip", scatter(ip.take(take), rows, n))
    _merge(columns, "user.name", scatter(_nonempty(user.take(take)), rows, n))
    _merge(columns, "http.request.method", scatter(_nonempty(method.take(take)), rows, n))
    _merge(columns, "url.original", scatter(_nonempty(url.take(take)), rows, n))
    _merge(columns, "http.response.status_code", scatter(status, rows, n))
    _merge(columns, "http.response.body.bytes", scatter(size, rows, n))
    _merge(columns, "user_agent.original", scatter(_nonempty(agent.take(take)), rows, n))
    _merge(columns, "log.level", scatter(level, rows, n))
