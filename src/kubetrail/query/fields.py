"""Field names -> SQL expressions with a *kind* that decides how values are compared.

Kinds: ``text`` (free-text columns with token semantics: ``message``, ``error.*`` and whole JSON
columns), ``keyword`` (exact string), ``int``/``float``, ``timestamp``, ``list`` (``list<string>``:
matches when any element matches), ``json`` (a path inside a JSON column, compared as the string
``json_extract_string`` returns) and ``jsonlist`` (a JSON path with ``[*]``, a list of strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from kubetrail.errors import QueryError
from kubetrail.schema import JSON_COLUMNS, SCHEMA, resolve

__all__ = ["TEXT_COLUMNS", "ResolvedField", "json_path_literal", "quote_ident", "resolve_field", "sql_string"]

TEXT_COLUMNS: frozenset[str] = frozenset({"message", "error.message", "error.stack_trace"}) | JSON_COLUMNS
_INDEX = re.compile(r"^(.*?)((?:\[(?:\*|[0-9]+)\])+)$")


def quote_ident(name: str) -> str:
    """A DuckDB identifier: double quotes, embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A DuckDB string literal with quotes doubled; NUL characters are refused (DuckDB rejects them)."""
    if "\x00" in value:
        raise ValueError("NUL character in a value")
    return "'" + value.replace("'", "''") + "'"


def json_path_literal(path: tuple[str, ...]) -> tuple[str, bool]:
    """``('spec', 'containers[*]', 'image')`` -> (``'$."spec"."containers"[*]."image"'``, is_list)."""
    parts: list[str] = ["$"]
    is_list = False
    for seg in path:
        index = ""
        m = _INDEX.match(seg)
        if m and m.group(1):
            seg, index = m.group(1), m.group(2)
            is_list = is_list or "*" in index
        parts.append('."' + seg.replace("\\", "\\\\").replace('"', '\\"') + '"' + index)
    return sql_string("".join(parts)), is_list


@dataclass(frozen=True)
class ResolvedField:
    """A field as SQL: ``sql`` evaluates to the value, ``column`` is the schema column it reads."""

    name: str
    sql: str
    kind: str
    column: str | None  # schema column (None for derived columns of an aggregation)
    is_json_path: bool = False


def _kind(column: str) -> str:
    typ = SCHEMA.field(column).type
    if pa.types.is_timestamp(typ):
        return "timestamp"
    if pa.types.is_integer(typ):
        return "int"
    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_boolean(typ):
        return "bool"
    if pa.types.is_list(typ):
        return "list"
    return "text" if column in TEXT_COLUMNS else "keyword"


def resolve_field(name: str, query: str = "", position: int | None = None) -> ResolvedField:
    """Resolve a field a hunter wrote (column, native audit alias or JSON path) to SQL."""
    if not name or any(c in name for c in "\x00\n\r"):
        raise QueryError(f"invalid field name {name!r}", query=query, position=position)
    ref = resolve(name)
    column_sql = quote_ident(ref.column)
    if not ref.is_json:
        return ResolvedField(name, column_sql, _kind(ref.column), ref.column)
    if any(not seg for seg in ref.json_path):
        raise QueryError(f"empty path segment in field {name!r}", query=query, position=position)
    path, is_list = json_path_literal(ref.json_path)
    # try(): one malformed JSON value must not fail the whole query
    sql = f"try(json_extract_string({column_sql}, {path}))"
    return ResolvedField(name, sql, "jsonlist" if is_list else "json", ref.column, is_json_path=True)
