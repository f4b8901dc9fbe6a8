"""Read-only SQL for ``kubetrail sql``: the query language's validator plus a keyword screen.

The real guarantee is the engine's sandbox (no file access outside the store, locked
configuration); this check gives a clear error with a position before anything runs.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from kubetrail.errors import QueryError

__all__ = ["query_api", "validate_read_only"]

_FORBIDDEN = re.compile(
    r"\b(INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|ATTACH|DETACH|COPY|EXPORT|IMPORT|INSTALL|LOAD|PRAGMA|SET|"
    r"CALL|CHECKPOINT|VACUUM|GRANT|REVOKE|TRUNCATE|USE|RESET)\b|read_|write_|glob\s*\(|getenv|"
    r"\bsql_auto_complete\b|duckdb_secrets|\bquery_table\b|\bquery\s*\(",
    re.IGNORECASE,
)


def query_api(name: str) -> Any:
    """A function of the query language package, or None when it is absent."""
    for module in ("kubetrail.query", "kubetrail.query.validate"):
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def validate_read_only(text: str) -> None:
    """One SELECT/WITH statement over ``logs``; no file, network, settings or DDL access."""
    validate_sql = query_api("validate_sql")
    if validate_sql is not None:
        validate_sql(text)
    stripped = re.sub(r"'(?:[^']|'')*'", "''", text)  # string literals cannot hide keywords
    body = stripped.strip().rstrip(";")
    if ";" in body:
        raise QueryError("only one statement is allowed", query=text, position=stripped.index(";"))
    if not re.match(r"^\s*(SELECT|WITH|FROM)\b", body, re.IGNORECASE):
        raise QueryError("only SELECT queries are allowed", query=text, position=0)
    bad = _FORBIDDEN.search(body)
    if bad:
        raise QueryError(
            f"{bad.group(0).strip()!r} is not allowed in read-only SQL", query=text, position=bad.start()
        )
