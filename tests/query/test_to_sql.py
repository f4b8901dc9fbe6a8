"""Golden tests: query -> SQL -> rows on the fixture in conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubetrail.errors import QueryError
from kubetrail.query import compile_query
from kubetrail.schema import from_pylist

from .conftest import NOW

Ids = Callable[..., list[str]]
Run = Callable[..., list[dict[str, Any]]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # field:value on keyword columns via native audit aliases and full names
        ("verb:create objectRef.resource:pods objectRef.subresource:exec", ["a1"]),
        ("kubernetes.audit.verb:list", ["a3", "a4"]),
        ("user.username:system\\:anonymous", ["a2", "a3"]),
        ('user.username:"system:anonymous"', ["a2", "a3"]),
        ("user.username:system:anonymous", ["a2", "a3"]),
        ("verb:CREATE", []),  # keyword fields are exact and case-sensitive
        ("namespace:kube-*", ["a2", "a4", "c3"]),
        ("pod:web-?", ["c1", "c2", "c4"]),
        ("verb:(get OR list) -namespace:kube-system", ["a3", "a6"]),
        # list columns match when any element matches
        ("sourceIPs:203.0.113.*", ["a2", "a3"]),
        ("sourceIPs:10.0.0.9", ["a3"]),
        ("user.groups:system\\:authenticated", ["a1", "a4"]),
        ("user.groups:system\\:*", ["a1", "a2", "a4"]),
        # integer columns compare numerically
        ("responseStatus.code:>=400", ["a2", "a3", "a6"]),
        ("responseStatus.code:>403", ["a6"]),
        ("responseStatus.code:<201", ["a4"]),
        ("responseStatus.code:<=201", ["a1", "a4", "a5"]),
        ("responseStatus.code:[401 TO 403]", ["a2", "a3"]),
        ("responseStatus.code:{401 TO 403}", []),
        ("responseStatus.code:[401 TO 403}", ["a3"]),
        ("responseStatus.code:[400 TO *]", ["a2", "a3", "a6"]),
        ("responseStatus.code:4*", ["a2", "a3", "a6"]),
        ("responseStatus.code:403", ["a2"]),
        # JSON columns: dotted keys, nested paths, arrays, numbers
        ("annotations.authorization.k8s.io/decision:allow", ["a1", "a4"]),
        ("annotations.authorization.k8s.io/decision:forbid", ["a2"]),
        ("requestObject.spec.hostPID:true", ["a5"]),
        ("requestObject.spec.containers[*].securityContext.privileged:true", ["a5"]),
        ("requestObject.spec.containers[*].image:nginx*", ["a6"]),
        ("requestObject.spec.replicas:>5", ["a6"]),
        ("requestObject.spec.replicas:[1 TO 3]", ["a5"]),
        ("attributes.trace_id:abc123", ["c2"]),
        ("latency_ms:>100", ["c2"]),  # unknown names are paths in attributes; malformed JSON is skipped
        # free text: case-insensitive tokens in message
        ("error", ["c2", "n1"]),
        ("ERROR", ["c2", "n1"]),
        ("errors", ["c3"]),
        ("timeout", ["c2"]),
        ("time*", ["c2", "c3"]),
        ('"connection refused"', ["c1"]),
        ('"refused by upstream"', ["c1"]),
        ('"onnection refused"', []),  # phrases start and end at token boundaries
        ("10.0.0.5", ["c1"]),
        ("10.0.0.5\\:8080", ["c1"]),
        ("db_primary", ["c2"]),
        ("db", ["c2"]),  # '_' is not alphanumeric: it separates tokens, as in the store's index
        ("nullpointerexception", ["c4"]),
        ("java.lang.*", ["c4"]),
        ("*Exception", ["c4"]),
        ("message:kube-dns", ["c3"]),
        ("evil/miner", ["n1"]),
        # boolean logic
        ("error OR timeouts", ["c2", "c3", "n1"]),
        ("error AND NOT rpc", ["c2"]),
        ("error && !rpc", ["c2"]),
        ("error -rpc", ["c2"]),
        ("(verb:get OR verb:list) AND responseStatus.code:>=401", ["a2", "a3", "a6"]),
        ("verb:get OR verb:list AND responseStatus.code:200", ["a2", "a4", "a6"]),
        ("NOT verb:get", ["a1", "a3", "a4", "a5", "c1", "c2", "c3", "c4", "n1", "n2"]),
        ("NOT (dataset:audit OR dataset:container)", ["n1", "n2"]),
        # existence
        ("_exists_:objectRef.subresource", ["a1", "a6"]),
        ("objectRef.subresource:*", ["a1", "a6"]),
        ("NOT _exists_:message", ["n2"]),
        ("_exists_:requestObject.spec.hostPID", ["a5", "a6"]),
        ("_exists_:user.groups", ["a1", "a2", "a4"]),
        # time
        ("@timestamp:>now-21m", ["a5", "a6", "c4", "n1"]),
        ("@timestamp:[now-36m TO now-29m]", ["a4", "c2"]),
        ("@timestamp:<2024-05-01T11:00:00Z", ["n2"]),
        ("@timestamp:2024-05-01", ["a1", "a2", "a3", "a4", "a5", "a6", "c1", "c2", "c3", "c4", "n1", "n2"]),
        ("*", ["a1", "a2", "a3", "a4", "a5", "a6", "c1", "c2", "c3", "c4", "n1", "n2"]),
        ("", ["a1", "a2", "a3", "a4", "a5", "a6", "c1", "c2", "c3", "c4", "n1", "n2"]),
    ],
)
def test_search_rows(ids: Ids, query: str, expected: list[str]) -> None:
    assert ids(query) == expected


def test_since_until(ids: Ids) -> None:
    assert ids("dataset:audit", since="35m") == ["a4", "a5", "a6"]
    assert ids("dataset:audit", since=NOW - timedelta(minutes=45), until="now-30m") == ["a2", "a3"]
    assert ids("*", since="2024-05-01T11:50:00Z") == ["a6", "n1"]
    since_ns = int((NOW - timedelta(minutes=10)).timestamp()) * 1_000_000_000
    assert ids("*", since=since_ns) == ["a6", "n1"]
    assert ids("*", until=since_ns + 1000) == ids("* | where @timestamp <= '2024-05-01T11:50:00Z'")
    with pytest.raises(QueryError):
        compile_query("*", since="yesterday")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('dataset:audit | where responseStatus.code >= 400 and verb = "get"', ["a2", "a6"]),
        ("| where verb in ('get', 'list') and not user.username = 'bob'", ["a2", "a3", "a4"]),
        ("| where sourceIPs = '10.0.0.9'", ["a3"]),
        ("| where sourceIPs != '10.0.0.5' and dataset = 'audit'", ["a2", "a3", "a4", "a5"]),
        ("| where user.username like 'system:%'", ["a2", "a3"]),
        ("| where message ilike '%TIMEOUT%'", ["c2", "c3"]),
        ("| where contains(lower(message), 'kube') or startswith(pod, 'coredns')", ["c3", "n1"]),
        ("| where match(message, '^[A-Z]+:')", ["c2"]),
        ("| where objectRef.subresource is not null", ["a1", "a6"]),
        ("| where requestObject.spec.replicas > 5", ["a6"]),
        ("| where requestObject.spec.hostPID = true", ["a5"]),
        ("| where @timestamp > 'now-12m'", ["a6", "n1"]),
        ("| where 400 <= responseStatus.code", ["a2", "a3", "a6"]),
        ("| where responseStatus.code = '403'", ["a2"]),
        ("| where user.groups is null and dataset = 'audit'", ["a3", "a5", "a6"]),
        ("| where `annotations.authorization.k8s.io/decision` = 'allow'", ["a1", "a4"]),
    ],
)
def test_where(ids: Ids, query: str, expected: list[str]) -> None:
    assert ids(query) == expected


def test_default_order_is_newest_first_and_head(run: Run) -> None:
    rows = run("dataset:audit | head 3")
    assert [r["event.id"] for r in rows] == ["a6", "a5", "a4"]
    rows = run("dataset:audit | sort @timestamp | head 2")
    assert [r["event.id"] for r in rows] == ["a1", "a2"]
    rows = run("dataset:audit | sort -responseStatus.code, user.username desc | head 2")
    assert [r["event.id"] for r in rows] == ["a6", "a2"]
    assert len(run("*", limit=4)) == 4
    assert len(run("* | head 3", limit=10)) == 3
    assert len(run("* | head 10", limit=2)) == 2


def test_fields_projects_columns_with_schema_names(run: Run) -> None:
    rows = run("verb:create | fields verb, user.username, requestObject.spec.hostPID")
    assert rows == [
        {
            "kubernetes.audit.verb": "create",
            "kubernetes.audit.user.username": "mallory",
            "requestObject.spec.hostPID": "true",
        },
        {
            "kubernetes.audit.verb": "create",
            "kubernetes.audit.user.username": "alice",
            "requestObject.spec.hostPID": None,
        },
    ]
    compiled = compile_query("verb:create | fields verb, pod")
    assert compiled.output_columns == ("kubernetes.audit.verb", "kubernetes.pod.name")


def test_stats(run: Run) -> None:
    rows = run(
        "responseStatus.code:>=400 | stats count() as failures, dc(verb) by user.username | sort -failures"
    )
    assert rows == [
        {"user.username": "system:anonymous", "failures": 2, "dc(verb)": 2},
        {"user.username": "bob", "failures": 1, "dc(verb)": 1},
    ]
    rows = run("dataset:audit | stats count() by sourceIPs | sort -count, sourceIPs | head 2")
    assert rows == [{"sourceIPs": "10.0.0.5", "count": 2}, {"sourceIPs": "198.51.100.23", "count": 2}]
    rows = run(
        "dataset:audit | stats min(responseStatus.code) as lo, max(responseStatus.code) as hi, "
        "sum(responseStatus.code), avg(responseStatus.code), median(responseStatus.code), "
        "p90(responseStatus.code), values(verb), count(objectRef.subresource)"
    )
    assert rows[0]["lo"] == 200 and rows[0]["hi"] == 404
    assert rows[0]["sum(responseStatus.code)"] == 201 + 403 + 401 + 200 + 201 + 404
    assert rows[0]["avg(responseStatus.code)"] == pytest.approx(1810 / 6)
    assert rows[0]["median(responseStatus.code)"] == pytest.approx(301)
    assert rows[0]["values(verb)"] == ["create", "get", "list"]
    assert rows[0]["count(objectRef.subresource)"] == 2
    rows = run("| stats avg(latency_ms) as lat by dataset | where lat > 0")
    assert rows == [{"dataset": "container", "lat": pytest.approx(131.0)}]
    rows = run("dataset:audit | stats values(user.groups) as g")
    assert rows == [{"g": ["dev", "system:authenticated", "system:unauthenticated"]}]


def test_stats_then_where_and_sort_on_outputs(run: Run) -> None:
    rows = run("| stats count() by dataset | where count >= 4 | sort count")
    assert rows == [{"dataset": "container", "count": 4}, {"dataset": "audit", "count": 6}]
    with pytest.raises(QueryError) as info:
        compile_query("| stats count() by dataset | where verb = 'get'")
    assert info.value.position == 35


def test_timechart(run: Run) -> None:
    rows = run("dataset:audit | timechart span=30m count() by verb")
    got = [(r["_time"].strftime("%H:%M"), r["verb"], r["count"]) for r in rows]
    assert got == [("11:00", "create", 1), ("11:00", "get", 1), ("11:00", "list", 1),
                   ("11:30", "create", 1), ("11:30", "get", 1), ("11:30", "list", 1)]  # fmt: skip
    rows = run("* | timechart span=1h")
    assert [(r["_time"].strftime("%H:%M"), r["count"]) for r in rows] == [("10:00", 1), ("11:00", 11)]


def test_dedup_keeps_newest(run: Run) -> None:
    rows = run("dataset:audit | dedup user.username | fields event.id, user.username")
    assert [r["event.id"] for r in rows] == ["a6", "a5", "a3", "a1"]
    rows = run("dataset:container | dedup pod, stream | sort @timestamp")
    assert [r["event.id"] for r in rows] == ["c1", "c2", "c3", "c4"]


def test_top_and_rare(run: Run) -> None:
    rows = run("dataset:audit | top 2 verb")
    assert rows == [
        {"verb": "create", "count": 2, "percent": pytest.approx(33.3333)},
        {"verb": "get", "count": 2, "percent": pytest.approx(33.3333)},
    ]
    rows = run("dataset:audit | top limit=1 user.username by verb")
    assert [(r["verb"], r["user.username"], r["count"]) for r in rows] == [
        ("create", "alice", 1),
        ("get", "bob", 1),
        ("list", "mallory", 1),
    ]
    rows = run("dataset:audit | top 1 sourceIPs")
    assert rows == [{"sourceIPs": "10.0.0.5", "count": 2, "percent": pytest.approx(2 / 7 * 100, abs=1e-3)}]
    rows = run("* | rare 1 dataset")
    assert rows == [{"dataset": "node", "count": 2, "percent": pytest.approx(2 / 12 * 100, abs=1e-3)}]


def test_hunting_examples(run: Run, ids: Ids) -> None:
    # exec into pods
    assert ids("verb:create objectRef.resource:pods objectRef.subresource:(exec OR attach)") == ["a1"]
    # secrets enumeration by anyone
    rows = run("objectRef.resource:secrets verb:(list OR get) | stats count() dc(namespace) by user.username")
    assert rows == [
        {"user.username": "mallory", "count": 1, "dc(namespace)": 1},
        {"user.username": "system:anonymous", "count": 2, "dc(namespace)": 2},
    ]
    # anonymous access
    assert ids('user.username:"system:anonymous" OR user.groups:system\\:unauthenticated') == ["a2", "a3"]
    # 401/403 bursts by source
    rows = run("responseStatus.code:(401 OR 403) | stats count() as denied by sourceIPs | where denied > 1")
    assert rows == [{"sourceIPs": "203.0.113.7", "denied": 2}]


def test_needles_only_from_required_clauses() -> None:
    def needles(q: str) -> list[tuple[str, str]]:
        return list(compile_query(q).needles)

    assert needles("verb:create sourceIPs:10.0.0.5 error") == [
        ("kubernetes.audit.verb", "create"),
        ("kubernetes.audit.sourceIPs", "10.0.0.5"),
        ("message", "error"),
    ]
    assert needles("error OR timeout") == []
    assert needles("NOT error") == []
    assert needles("error (timeout OR refused)") == [("message", "error")]
    assert needles("verb:(get OR list)") == []
    assert needles("responseStatus.code:403 requestObject.spec.hostPID:true") == []  # not indexed kinds
    assert needles("kube-* *admin* java.lang.Null*") == [("message", "kube-"), ("message", "java.lang.")]
    assert needles('"connection refused"') == [("message", "connection refused")]
    assert needles("| where verb = 'get' and namespace = 'prod' or x = 'y'") == []
    assert needles("| where verb = 'get' and namespace = 'prod'") == [
        ("kubernetes.audit.verb", "get"),
        ("kubernetes.namespace", "prod"),
    ]
    assert needles("| head 1 | where verb = 'get'") == []


def test_where_sql_time_range_and_columns() -> None:
    c = compile_query(
        "verb:get @timestamp:>=2024-05-01T10:00:00Z | where responseStatus.code > 400", since="2024-04-01"
    )
    assert "kubernetes.audit.responseStatus.code" in c.where_sql
    assert c.time_range.start is not None and c.time_range.start.isoformat() == "2024-05-01T10:00:00+00:00"
    assert c.time_range.end is None
    assert {"kubernetes.audit.verb", "@timestamp", "kubernetes.audit.responseStatus.code"} <= c.columns_used
    assert not c.is_aggregation and compile_query("| stats count()").is_aggregation
    assert compile_query("@timestamp:[2024-01-01 TO 2024-01-02]").time_range.end is not None


def test_values_are_escaped(con: duckdb.DuckDBPyConnection) -> None:
    evil = "x'); DROP TABLE logs; --"
    for q in (f'verb:"{evil}"', f'| where verb = "{evil}"', f'"{evil}"', "namespace:x\\'\\)\\;*"):
        sql = compile_query(q).sql
        assert con.execute(sql).fetchall() == []
    assert con.execute("SELECT count(*) FROM logs").fetchone() == (12,)


def test_relation_may_be_a_table_function(tmp_path: Path, batch: pa.RecordBatch) -> None:
    path = tmp_path / "seg.parquet"
    pq.write_table(pa.Table.from_batches([batch]), path)
    c = compile_query("verb:get responseStatus.code:>=400", relation=f"read_parquet('{path}')")
    rows = duckdb.sql(c.sql).fetchall()
    assert len(rows) == 2
    plan = "\n".join(str(r[1]) for r in duckdb.sql("EXPLAIN " + c.sql).fetchall())
    # plain comparisons reach the Parquet scan as table filters (pushdown)
    assert "Filters" in plan or "filters" in plan.lower(), plan


@pytest.mark.parametrize("session_tz", ["UTC", "America/New_York"])
def test_timechart_buckets_floor_to_the_span_in_utc(session_tz: str) -> None:
    """Buckets are computed on epoch nanoseconds (faster than time_bucket); they must equal
    time_bucket's, also before 1970 and whatever the session time zone."""
    stamps = [
        -90_500_000_000,
        -60_000_000_001,
        -60_000_000_000,
        -1,
        0,
        59_999_999_999,
        60_000_000_000,
        1_767_268_812_345_678_901,
    ]
    rows = [{"@timestamp": ts, "event.id": str(i), "message": "x"} for i, ts in enumerate(stamps)]
    c = duckdb.connect()
    c.execute(f"SET TimeZone = '{session_tz}'")
    c.register("logs_arrow", pa.Table.from_batches([from_pylist(rows)]))
    c.execute("CREATE TABLE logs AS SELECT * FROM logs_arrow")
    sql = compile_query("* | timechart span=1m count()", now=NOW).sql
    got = sorted((r[0].timestamp(), r[1]) for r in c.execute(sql).fetchall())
    expected: dict[float, int] = {}
    for ts in stamps:
        minute = (ts // 60_000_000_000) * 60
        expected[minute] = expected.get(minute, 0) + 1
    assert got == sorted((float(k), v) for k, v in expected.items())
