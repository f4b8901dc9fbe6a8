"""Property tests: the parser only ever raises QueryError, compiled SQL always runs, and the
boolean operators mean set operations on the fixture's rows (AND = intersection, OR = union,
NOT = complement), and needles are present in every matching row."""

from __future__ import annotations

import contextlib
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.errors import QueryError
from kubetrail.query import compile_query, parse

from .conftest import NOW, ROWS

ALL_IDS = frozenset(r["event.id"] for r in ROWS)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ATOMS = [
    "verb:get",
    "verb:list",
    "verb:cr*",
    "sourceIPs:10.0.0.5",
    "sourceIPs:203.*",
    "responseStatus.code:>=400",
    "responseStatus.code:[200 TO 401}",
    "namespace:prod",
    "namespace:kube-*",
    "error",
    "timeout*",
    '"connection refused"',
    "kube",
    "_exists_:objectRef.subresource",
    "requestObject.spec.hostPID:true",
    "requestObject.spec.replicas:>2",
    "annotations.authorization.k8s.io/decision:allow",
    "user.groups:system\\:*",
    "@timestamp:>now-30m",
    "latency_ms:<100",
    "dataset:node",
    "message:*",
    "pod:web-?",
]

PIECES = st.sampled_from(
    [*ATOMS, " ", "(", ")", '"', ":", "|", "||", "&&", "AND", "OR", "NOT", "-", "!", "+", "*", "?", "\\", "[",
     "]", "{", "}", "TO", ">", "<=", "=", "'", "`", ",", "where", "stats", "count()", "by", "sort", "head",
     "fields", "top", "rare", "dedup", "timechart", "span=1m", "avg(", "x", "0", "-1", "\x00", "é", "\n"]
)  # fmt: skip


def _ids(con: duckdb.DuckDBPyConnection, query: str) -> frozenset[str]:
    sql = compile_query(query, now=NOW).sql
    return frozenset(r[0] for r in con.execute(f'SELECT "event.id" FROM ({sql})').fetchall())


@FAST
@given(st.text(max_size=80))
def test_parser_raises_only_query_error_on_random_text(text: str) -> None:
    with contextlib.suppress(QueryError):
        parse(text)


@FAST
@given(st.lists(PIECES, max_size=12).map(" ".join))
def test_random_token_soup_compiles_to_sql_that_runs_or_raises_query_error(
    con: duckdb.DuckDBPyConnection, text: str
) -> None:
    try:
        compiled = compile_query(text, now=NOW)
    except QueryError:
        return
    con.execute(compiled.sql).fetchall()  # any DuckDB error here is a compiler bug
    con.execute(f"SELECT count(*) FROM logs WHERE {compiled.where_sql}").fetchall()


def _expr(depth: int) -> st.SearchStrategy[str]:
    atom = st.sampled_from(ATOMS)
    if depth == 0:
        return atom
    sub = _expr(depth - 1)
    return st.one_of(
        atom,
        st.tuples(sub, sub).map(lambda t: f"({t[0]} AND {t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]} OR {t[1]})"),
        sub.map(lambda a: f"NOT ({a})"),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_expr(2), _expr(2))
def test_boolean_operators_are_set_operations(con: duckdb.DuckDBPyConnection, a: str, b: str) -> None:
    ra, rb = _ids(con, a), _ids(con, b)
    assert _ids(con, f"({a}) AND ({b})") == ra & rb
    assert _ids(con, f"({a}) ({b})") == ra & rb
    assert _ids(con, f"({a}) OR ({b})") == ra | rb
    assert _ids(con, f"NOT ({a})") == ALL_IDS - ra
    assert _ids(con, f"-({a})") == ALL_IDS - ra
    assert _ids(con, "* | where verb = 'get' or not verb = 'get'") == ALL_IDS
    assert _ids(con, f"({a}) | where responseStatus.code >= 400") == ra & _ids(
        con, "responseStatus.code:>=400"
    )


@FAST
@given(_expr(2))
def test_needles_are_in_every_matching_row(con: duckdb.DuckDBPyConnection, query: str) -> None:
    tokens = pytest.importorskip("kubetrail.store.tokens")
    compiled = compile_query(query, now=NOW)
    if not compiled.needles:
        return
    rows = con.execute(f"SELECT * FROM ({compiled.sql})").fetchall()
    names = [d[0] for d in con.description or []]
    for row in rows:
        record: dict[str, Any] = dict(zip(names, row, strict=True))
        for column, needle in compiled.needles:
            value = record[column]
            values = value if isinstance(value, list) else [value]
            have: set[str] = set()
            for v in values:
                have |= set(tokens.tokens_of(v))
            missing = set(tokens.needle_tokens(needle)) - have
            assert not missing, (query, column, needle, value)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(ATOMS),
    st.sampled_from(["verb", "namespace", "sourceIPs", "dataset", "responseStatus.code"]),
)
def test_pipes_never_fail_at_run_time(con: duckdb.DuckDBPyConnection, atom: str, field: str) -> None:
    for pipes in (
        f"| stats count() dc({field}) values({field}) by {field} | sort -count | head 3",
        f"| top 2 {field} by stream",
        f"| rare 1 {field}",
        f"| top 2 {field} by user.groups",
        "| stats count() by user.groups | top 1 user.groups",
        f"| dedup {field} | fields event.id, {field}",
        f"| timechart span=10m count() by {field}",
        f"| sort {field} | head 2 | where {field} is not null",
    ):
        con.execute(compile_query(f"{atom} {pipes}", now=NOW).sql).fetchall()
