"""validate_sql: one read-only SELECT over the allowed relations, judged by DuckDB's parser."""

from __future__ import annotations

import duckdb
import pytest

from kubetrail.errors import QueryError
from kubetrail.query import validate_sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM logs",
        'select "kubernetes.audit.verb", count(*) from logs group by 1 order by 2 desc limit 5;',
        "WITH x AS (SELECT * FROM logs WHERE \"event.dataset\" = 'audit') SELECT * FROM x",
        'SELECT * FROM logs WHERE "event.id" IN (SELECT "event.id" FROM logs LIMIT 1)',
        "SELECT 1",
    ],
)
def test_accepts_read_only_selects(sql: str, con: duckdb.DuckDBPyConnection) -> None:
    checked = validate_sql(sql)
    con.execute(checked).fetchall()


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("DROP TABLE logs", "only SELECT"),
        ("INSERT INTO logs SELECT * FROM logs", "only SELECT"),
        ("COPY logs TO '/tmp/x.csv'", "only SELECT"),
        ("ATTACH '/tmp/x.db'", "only SELECT"),
        ("PRAGMA version", "only SELECT"),
        ("SET threads = 1", "only SELECT"),
        ("SELECT 1; DROP TABLE logs", "exactly one"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv"),
        ("SELECT * FROM logs, read_text('/etc/passwd')", "table function read_text"),
        ("SELECT * FROM '/etc/passwd'", "unknown relation"),
        ("SELECT * FROM other_table", "unknown relation"),
        ("SELECT * FROM main.logs", "unknown relation"),
        ("SELECT getenv('HOME')", "getenv"),
        ("SELECT current_setting('memory_limit')", "current_setting"),
        ("SELEC 1", "does not parse"),
        ("", "empty"),
    ],
)
def test_refuses_everything_else(sql: str, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        validate_sql(sql)
    assert fragment in str(info.value)


def test_allowed_relations_and_positions() -> None:
    assert validate_sql("SELECT * FROM segments", allowed_relations=["segments"])
    with pytest.raises(QueryError) as info:
        validate_sql("SELECT * FROM logs JOIN secrets USING (id)")
    assert info.value.position == 24
