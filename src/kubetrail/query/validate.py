"""``validate_sql``: accept only one read-only ``SELECT`` for ``kubetrail sql``.

DuckDB's own parser decides, not a regex: ``duckdb.extract_statements`` must yield exactly one
statement of type SELECT, and ``json_serialize_sql`` (the parse tree as JSON) must show no table
functions (``read_csv``, ``read_text``, ``glob`` ... read files) and no tables other than the
allowed relations and the query's own CTEs (a quoted path like ``'/etc/passwd'`` is a replacement
scan of a file). A few scalar functions that read the environment or files are refused too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import duckdb
import orjson

from kubetrail.errors import QueryError

__all__ = ["validate_sql"]

_DENIED_FUNCTIONS = frozenset(
    {"getenv", "current_setting", "read_text", "read_blob", "glob", "query", "query_table"}
)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _cte_names(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map", []):
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    names.add(entry["key"].lower())
    return names


def validate_sql(sql: str, allowed_relations: Iterable[str] = ("logs",)) -> str:
    """Return ``sql`` (stripped) if it is one read-only SELECT over ``allowed_relations``.

    Raises ``QueryError`` otherwise, naming what was refused and, when DuckDB reports it, where.
    """
    allowed = {r.lower() for r in allowed_relations}
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise QueryError("empty SQL statement")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryError(f"SQL does not parse: {exc}", query=text) from None
    if len(statements) != 1:
        raise QueryError(f"expected exactly one SQL statement, got {len(statements)}", query=text)
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed, not {statements[0].type.name}", query=text)
    con = duckdb.connect(":memory:")
    try:
        raw = con.execute("SELECT json_serialize_sql(?)", [text]).fetchone()
    finally:
        con.close()
    tree = orjson.loads(raw[0]) if raw else {"error": True, "error_message": "no parse tree"}
    if tree.get("error"):
        raise QueryError(f"SQL is not a plain SELECT: {tree.get('error_message', 'unsupported')}", query=text)
    ctes = _cte_names(tree)
    for node in _walk(tree):
        kind = node.get("type")
        location = node.get("query_location")
        position = location if isinstance(location, int) and location < len(text) else None
        if kind == "TABLE_FUNCTION":
            name = node.get("function", {}).get("function_name", "?")
            raise QueryError(f"table function {name}() is not allowed", query=text, position=position)
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", "")).lower()
            if node.get("catalog_name") or node.get("schema_name") or name not in allowed | ctes:
                raise QueryError(
                    f"unknown relation {node.get('table_name')!r} (allowed: {', '.join(sorted(allowed))})",
                    query=text,
                    position=position,
                )
        if (
            node.get("class") == "FUNCTION"
            and str(node.get("function_name", "")).lower() in _DENIED_FUNCTIONS
        ):
            raise QueryError(
                f"function {node['function_name']}() is not allowed", query=text, position=position
            )
    return text
