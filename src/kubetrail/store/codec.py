"""The stored form of segment rows: text that other columns of the same row already hold is kept once.

A parser keeps the line it parsed and also the fields it found in it: an access-log ``message`` holds
``url.original``, ``user_agent.original``, the client address and the time; an app's JSON line
often holds the runtime's timestamp; an audit event's summary ``message`` is made of its user, verb
and object, and its ``stageTimestamp`` is its ``@timestamp``. Segments store each such value once,
and every read path gives the rows back as the pipeline produced them (measured on the simulator
corpus: -20 % bytes; see ``docs/store.md``):

* ``event.id`` of a tailed line (``<file prefix>-<log.offset>``) is stored as the prefix
  (``_kt.event_id_prefix``) and a null id (``split_event_id`` / ``join_event_id``);
* ``message`` and ``attributes`` may hold *references*: ``\\x01`` + a key letter stands for the
  text of another column of the row (``Reference``), e.g. ``\\x01B`` for ``url.original``;
* ``kubernetes.audit.stageTimestamp`` equal to ``@timestamp`` is stored as null.

A rewrite applies to a row only where decoding the stored value gives the original back, which is
checked when the segment is written with the same SQL the readers run; the row's ``_kt.codec``
field (4 bits per column) names the rewrite, 0 = stored as is. So a line that contains ``\\x01``
itself, or a reference that does not round-trip, is simply stored unchanged. Decoding is one DuckDB
expression per column (``decode_sql``), used by the query engine's scans and, through DuckDB over
Arrow, by ``decode`` (compaction, retention, dedup). Expressions only read columns no rewrite
changes, and format times in UTC whatever the session's time zone.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CODEC_COLUMN",
    "ID_PREFIX_COLUMN",
    "REWRITES",
    "REWRITTEN_COLUMNS",
    "STORAGE_COLUMNS",
    "Reference",
    "Rewrite",
    "decode",
    "decode_sql",
    "encode",
    "join_event_id",
    "query_reads",
    "split_event_id",
    "stored_columns",
]

# ``event.id`` of a file-tailed line is ``<prefix of the file>-<log.offset>``: the prefix repeats for
# every line of a file and the offset is already stored, so segments keep only the prefix
# (dictionary-encoded) and null ids. Ids of another shape are stored as they are. Measured: -0.55 MB
# (-6 %) on the 266k-event simulator corpus.
ID_PREFIX_COLUMN = "_kt.event_id_prefix"
CODEC_COLUMN = "_kt.codec"
STORAGE_COLUMNS = (ID_PREFIX_COLUMN, CODEC_COLUMN)
_ID_SHAPE = r"^(?P<prefix>.*)-(?P<offset>[0-9]+)$"
MARK = "\x01"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _utc(fmt: str) -> str:
    """``@timestamp`` formatted in UTC: ``strftime`` of a TIMESTAMPTZ follows the session time zone,
    so it formats the UTC wall time rebuilt from epoch microseconds (truncated; also 30 % cheaper
    than ``timezone('UTC', ...)``)."""
    return f"""strftime(make_timestamp(epoch_ns("@timestamp") // 1000), {_lit(fmt)})"""


def _text(column: str) -> str:
    return f"CAST({_q(column)} AS VARCHAR)"


@dataclass(frozen=True)
class Reference:
    """``MARK + key`` in the stored text stands for ``sql`` (a value of the same row)."""

    key: str
    sql: str
    reads: tuple[str, ...]


def _column(key: str, name: str) -> Reference:
    return Reference(key, _text(name), (name,))


def _time(key: str, fmt: str) -> Reference:
    return Reference(key, _utc(fmt), ("@timestamp",))


# Values shorter than this are not replaced (a reference is two bytes).
_MIN_REFERENCE = 3


def _encode_references(value: str, refs: Sequence[Reference]) -> str:
    """SQL replacing every occurrence of each reference's value (longest first: list order)."""
    out = value
    fallback = _lit(MARK + MARK)  # replacing "\x01\x01": a no-op unless the text has it (then refused)
    for ref in refs:
        target = f"coalesce(CASE WHEN length({ref.sql}) >= {_MIN_REFERENCE} THEN {ref.sql} END, {fallback})"
        out = f"replace({out}, {target}, {_lit(MARK + ref.key)})"
    return out


def _decode_references(value: str, refs: Sequence[Reference]) -> str:
    out = value
    for ref in reversed(refs):
        out = f"replace({out}, {_lit(MARK + ref.key)}, coalesce({ref.sql}, ''))"
    return out


@dataclass(frozen=True)
class Rewrite:
    """One way to store ``column`` smaller: ``encode``/``decode`` are SQL over ``{v}`` (the value)
    and the row's other columns; tried where ``when`` holds; ``code`` (1-15) names it in the row's
    ``_kt.codec`` field of the column."""

    column: str
    code: int
    when: str
    encode: str
    decode: str
    reads: tuple[str, ...]

    def when_sql(self, value: str) -> str:
        return self.when.replace("{v}", value)

    def encode_sql(self, value: str) -> str:
        return self.encode.replace("{v}", value)

    def decode_sql(self, value: str) -> str:
        return self.decode.replace("{v}", value)


def _references(column: str, code: int, when: str, refs: Sequence[Reference]) -> Rewrite:
    reads = tuple(dict.fromkeys(c for ref in refs for c in ref.reads))
    encode, decode = _encode_references("{v}", refs), _decode_references("{v}", refs)
    return Rewrite(column, code, when, encode, decode, reads)


_ISO_US = _time("U", "%Y-%m-%dT%H:%M:%S.%fZ")
_ISO_MS = _time("M", "%Y-%m-%dT%H:%M:%S.%gZ")
_ACCESS = (  # nginx / apache access lines (formats.payload): longest values first
    _column("A", "user_agent.original"),
    _column("B", "url.original"),
    _time("C", "%d/%b/%Y:%H:%M:%S +0000"),
    _column("D", "source.ip"),
    _column("E", "http.response.body.bytes"),
    _column("F", "http.response.status_code"),
    _column("G", "http.request.method"),
)
_AUDIT = (  # the audit summary "<user> <verb> <resource> <namespace>/<name> -> <code>"
    _column("A", "kubernetes.audit.user.username"),
    _column("B", "kubernetes.audit.objectRef.name"),
    _column("C", "kubernetes.audit.objectRef.namespace"),
    _column("D", "kubernetes.audit.objectRef.subresource"),
    _column("E", "kubernetes.audit.objectRef.resource"),
    _column("F", "kubernetes.audit.verb"),
    _column("G", "kubernetes.audit.responseStatus.code"),
)
_TIMES = (_ISO_US, _ISO_MS)

REWRITES: tuple[Rewrite, ...] = (
    _references("message", 1, '"http.request.method" IS NOT NULL', _ACCESS),
    _references("message", 2, '"kubernetes.audit.verb" IS NOT NULL', _AUDIT),
    _references("message", 3, "TRUE", _TIMES),
    _references("attributes", 1, "TRUE", _TIMES),
    Rewrite(
        "kubernetes.audit.stageTimestamp",
        1,
        '{v} = "@timestamp"',
        "NULL",
        '"@timestamp"',
        ("@timestamp",),
    ),
)
# The stored form is a file format: a rewrite's key letters, codes and SQL must never change meaning
# (segments already written decode with them). A different rewrite gets a new code; a different
# layout needs a new CODEC_COLUMN name. ``tests/store/test_codec.py`` pins the stored bytes.
_SHIFT = {column: 4 * i for i, column in enumerate(dict.fromkeys(r.column for r in REWRITES))}
REWRITTEN_COLUMNS = frozenset(_SHIFT)
assert not REWRITTEN_COLUMNS & {c for r in REWRITES for c in r.reads}, "a rewrite reads a rewritten column"


def _usable(names: Iterable[str]) -> list[Rewrite]:
    have = set(names)
    return [r for r in REWRITES if r.column in have and set(r.reads) <= have]


# --- event.id ---------------------------------------------------------------------------------


def split_event_id(table: pa.Table) -> pa.Table:
    """Replace ids equal to ``<prefix>-<log.offset>`` by null plus the prefix in ``ID_PREFIX_COLUMN``."""
    table = join_event_id(table)
    if "event.id" not in table.column_names or "log.offset" not in table.column_names:
        return table
    ids = table.column("event.id")
    parts = pc.extract_regex(ids, _ID_SHAPE)
    offset_text = pc.cast(table.column("log.offset"), pa.string())
    same = pc.fill_null(pc.equal(parts.combine_chunks().field("offset"), offset_text), False)
    prefix = pc.if_else(same, parts.combine_chunks().field("prefix"), pa.scalar(None, pa.string()))
    stored = pc.if_else(same, pa.scalar(None, ids.type), ids)
    table = table.set_column(table.column_names.index("event.id"), table.schema.field("event.id"), stored)
    return table.append_column(pa.field(ID_PREFIX_COLUMN, pa.string()), prefix)


def join_event_id(table: pa.Table) -> pa.Table:
    """The inverse of ``split_event_id``: full ids back in ``event.id``, no prefix column."""
    if ID_PREFIX_COLUMN not in table.column_names:
        return table
    prefix = table.column(ID_PREFIX_COLUMN)
    table = table.drop_columns([ID_PREFIX_COLUMN])
    if "event.id" not in table.column_names or "log.offset" not in table.column_names:
        return table
    offset_text = pc.cast(table.column("log.offset"), pa.string())
    composed = pc.binary_join_element_wise(prefix, offset_text, "-")
    field = table.schema.field("event.id")
    ids = pc.coalesce(table.column("event.id"), pc.cast(composed, field.type))
    return table.set_column(table.column_names.index("event.id"), field, ids)


# --- SQL --------------------------------------------------------------------------------------


def _field(column: str) -> str:
    return f"(({_q(CODEC_COLUMN)} >> {_SHIFT[column]}) & 15)"


def _decoded(column: str, rewrites: Sequence[Rewrite]) -> str:
    value = _q(column)
    branches = " ".join(f"WHEN {r.code} THEN {r.decode_sql(value)}" for r in rewrites if r.column == column)
    return f"CASE {_field(column)} {branches} ELSE {value} END"


def decode_sql(names: Iterable[str], exclude: Sequence[str] = (), only: Collection[str] | None = None) -> str:
    """DuckDB select list giving back the rows of a segment with these column ``names``:
    ``event.id`` recomposed, rewritten columns decoded, storage columns and ``exclude`` left out.

    ``only``: decode just these of the rewritten columns and keep ``_kt.codec``, so the others can
    be decoded later on the result (``decode``): a query that does not read ``message`` then
    pays neither for binding its decoder (~0.1 ms per function, ~5 ms in all) nor for running it.
    """
    have = list(names)
    rewrites = _usable(have) if CODEC_COLUMN in have else []
    now = [r for r in rewrites if only is None or r.column in only]
    keep_codec = len(now) < len(rewrites)  # some columns are decoded on the result
    storage = [c for c in STORAGE_COLUMNS if c in have and not (c == CODEC_COLUMN and keep_codec)]
    dropped = [*storage, *(c for c in exclude if c not in storage)]
    replaced: list[str] = []
    if ID_PREFIX_COLUMN in have and "event.id" in have and "log.offset" in have:
        composed = f"""{_q(ID_PREFIX_COLUMN)} || '-' || CAST("log.offset" AS VARCHAR)"""
        replaced.append(f'coalesce("event.id", {composed}) AS "event.id"')
    for column in dict.fromkeys(r.column for r in now):
        replaced.append(f"{_decoded(column, now)} AS {_q(column)}")
    select = "*"
    if dropped:
        select += " EXCLUDE (" + ", ".join(_q(c) for c in dropped) + ")"
    if replaced:
        select += " REPLACE (" + ", ".join(replaced) + ")"
    return select


def query_reads(query: object, sql: str) -> frozenset[str] | None:
    """The rewritten columns a compiled hunting query reads in its conditions, groupings or named
    outputs, which its scans must decode (``decode_sql(only=...)``); None when unknown (a
    ``where=`` string): all. Whole-event output is decoded after the query (``decode``)."""
    used = getattr(query, "columns_used", None)
    if used is None:
        return None
    named = {c for c in REWRITTEN_COLUMNS if _q(c) in sql}  # the compiler quotes every column
    return REWRITTEN_COLUMNS & (set(used) | set(getattr(query, "output_columns", None) or ()) | named)


def stored_columns(columns: Iterable[str], names: Iterable[str]) -> list[str]:
    """The stored columns (of a segment with these ``names``) that reading ``columns`` needs."""
    have = list(names)
    wanted = [c for c in columns if c in have]
    if "event.id" in wanted and ID_PREFIX_COLUMN in have:
        wanted += ["log.offset", ID_PREFIX_COLUMN]
    if CODEC_COLUMN in have:
        rewrites = [r for r in _usable(have) if r.column in wanted]
        if rewrites:
            wanted += [CODEC_COLUMN, *(c for r in rewrites for c in r.reads)]
    return list(dict.fromkeys(wanted))


# --- Arrow ------------------------------------------------------------------------------------

_local = threading.local()


def _duckdb() -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        _local.con = con
    return con


# ``execute`` binds ~1.5 ms faster than ``sql``; the Arrow copy it warns about is of a result this
# size only. A filter, not ``catch_warnings``: that is not thread-safe (compaction runs in threads).
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


def _run(sql: str, kt_codec_rows: pa.Table) -> pa.Table:
    """``sql`` over the Arrow table ``kt_codec_rows`` (found by DuckDB's replacement scan, which is
    cheaper than register/unregister)."""
    out: pa.Table = _duckdb().execute(sql).to_arrow_table()
    return out


def _set_columns(table: pa.Table, out: pa.Table, columns: Iterable[str]) -> pa.Table:
    """``table`` with ``columns`` replaced by ``out``'s, cast back to ``table``'s types."""
    for column in columns:
        field = table.schema.field(column)
        table = table.set_column(table.column_names.index(column), field, out.column(column).cast(field.type))
    return table


def _needed(table: pa.Table, rewrites: Sequence[Rewrite]) -> pa.Table:
    wanted = dict.fromkeys([*(r.column for r in rewrites), *(c for r in rewrites for c in r.reads)])
    return table.select([c for c in wanted if c in table.column_names])


@functools.lru_cache(maxsize=16)
def _encode_query(names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    rewrites = _usable(names)
    columns = tuple(dict.fromkeys(r.column for r in rewrites))
    tried = []
    for i, r in enumerate(rewrites):
        value = _q(r.column)
        tried.append(f"CASE WHEN {r.when_sql(value)} THEN {r.encode_sql(value)} END AS e{i}")
    codes, stored = [], []
    for column in columns:
        value = _q(column)
        ok = [(i, r) for i, r in enumerate(rewrites) if r.column == column]
        checks = " ".join(
            f"WHEN {r.when_sql(value)} AND e{i} IS DISTINCT FROM {value} "
            f"AND {r.decode_sql(f'e{i}')} IS NOT DISTINCT FROM {value} THEN {r.code}"
            for i, r in ok
        )
        codes.append(f"CASE {checks} ELSE 0 END AS c{_SHIFT[column]}")
        picks = " ".join(f"WHEN {r.code} THEN e{i}" for i, r in ok)
        stored.append(f"CASE c{_SHIFT[column]} {picks} ELSE {value} END AS {_q(column)}")
    flags = " | ".join(f"(c{_SHIFT[c]} << {_SHIFT[c]})" for c in columns) or "0"
    sql = (
        f"SELECT {', '.join(stored)}, CAST({flags} AS INTEGER) AS {_q(CODEC_COLUMN)} "
        f"FROM (SELECT *, {', '.join(codes)} FROM (SELECT *, {', '.join(tried)} FROM kt_codec_rows))"
    )
    return sql, columns


def encode(table: pa.Table) -> pa.Table:
    """The stored form of decoded rows (see the module docstring); idempotent on stored rows."""
    table = split_event_id(decode(table))
    rewrites = _usable(table.column_names)
    if not rewrites or table.num_rows == 0:
        return table
    rows = _needed(table, rewrites)
    sql, columns = _encode_query(tuple(rows.column_names))
    out = _run(sql, rows)
    table = _set_columns(table, out, columns)
    return table.append_column(pa.field(CODEC_COLUMN, pa.int32()), out.column(CODEC_COLUMN))


def decode(table: pa.Table) -> pa.Table:
    """Rows as the pipeline produced them from their stored form (a no-op on decoded rows).

    Only the rewrites that occur in ``table`` are run (a search result often holds a few rows of
    one kind); rows whose ``_kt.codec`` is null (the tail in a union) are as they were."""
    if CODEC_COLUMN in table.column_names:
        codes = pc.unique(table.column(CODEC_COLUMN).drop_null()).to_pylist()
        present = [
            r
            for r in _usable(table.column_names)
            if any((c >> _SHIFT[r.column]) & 15 == r.code for c in codes)
        ]
        if present:
            columns = list(dict.fromkeys(r.column for r in present))
            needed = table.select(list(dict.fromkeys([CODEC_COLUMN, *_needed(table, present).column_names])))
            select = ", ".join(f"{_decoded(c, present)} AS {_q(c)}" for c in columns)
            table = _set_columns(table, _run(f"SELECT {select} FROM kt_codec_rows", needed), columns)
        table = table.drop_columns([CODEC_COLUMN])
    return join_event_id(table)
