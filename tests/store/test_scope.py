"""Namespace-scoped reads: a viewer's search sees only its namespaces, whatever the query shape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kubetrail.schema import TIMESTAMP, conform
from kubetrail.store import Store
from kubetrail.store.engine import QueryRun
from tests.store.conftest import T0, make_batch

HOUR = 3600 * 10**9
ALLOWED = ["payments", "web"]


def _timestamps(n: int, start_ns: int) -> pa.Array:
    return pa.array([start_ns + i * 10**6 for i in range(n)], pa.int64()).cast(TIMESTAMP)


def _node_logs(n: int) -> pa.RecordBatch:
    """Rows without a namespace (kubelet, syslog): never visible to a namespace-scoped reader."""
    cols = {
        "@timestamp": _timestamps(n, T0),
        "event.id": pa.array([f"node-{i}" for i in range(n)]),
        "event.dataset": pa.array(["kubelet"] * n),
        "message": pa.array([f"payments web kubelet line {i}" for i in range(n)]),
    }
    return conform(cols, n)


def _only(namespace: str, n: int, seed: int, hour: int) -> pa.RecordBatch:
    """``n`` rows of one namespace, all in hour ``hour`` after T0 (a single-namespace segment)."""
    batch = make_batch(10 * n, seed=seed, id_prefix=namespace)
    rows = batch.filter(pc.equal(batch.column("kubernetes.namespace"), namespace)).slice(0, n)
    assert rows.num_rows == n
    cols = {name: rows.column(name) for name in rows.schema.names}
    return conform(cols | {"@timestamp": _timestamps(n, T0 + hour * HOUR)}, n)


@pytest.fixture
def filled(store: Store) -> Store:
    """Segments (hours 0-2 mixed with node logs, a web-only hour, a kube-system-only hour) + a tail."""
    store.append(make_batch(600))
    store.append(_node_logs(40))
    store.append(_only("web", 50, seed=3, hour=5))
    store.append(_only("kube-system", 50, seed=4, hour=6))
    store.flush()
    store.append(make_batch(200, seed=7, id_prefix="tail"))  # stays in the tail
    assert store.tail.rows == 200
    return store


def _search(store: Store, query: str | None = None, namespaces: Sequence[str] | None = None) -> pa.Table:
    result = store.search(query, since=T0 - HOUR, until=T0 + 10 * HOUR, limit=100_000, namespaces=namespaces)
    return result.table


def _namespaces(table: pa.Table) -> Counter[str | None]:
    """Namespace values of the rows (``by namespace`` names the output column ``namespace``)."""
    name = "kubernetes.namespace" if "kubernetes.namespace" in table.column_names else "namespace"
    return Counter(table.column(name).to_pylist())


def test_scoped_search_sees_only_allowed_namespaces_tail_included(filled: Store) -> None:
    full = _search(filled)
    scoped = _search(filled, namespaces=ALLOWED)
    want = {ns: c for ns, c in _namespaces(full).items() if ns in ALLOWED}
    assert _namespaces(scoped) == want and sum(want.values()) > 0
    ids = scoped.column("event.id").to_pylist()
    assert any(i.startswith("tail-") for i in ids), "tail rows are in scope"
    assert any(i.startswith("e-") for i in ids), "segment rows are in scope"
    assert any(i.startswith("web-") for i in ids), "the web-only segment is read"
    assert None in _namespaces(full) and None not in _namespaces(scoped), "node logs are out of scope"


@pytest.mark.parametrize(
    "query",
    [
        "* | stats count() by kubernetes.namespace",
        "* | top 10 kubernetes.namespace",
        "* | dedup kubernetes.namespace",
        "timeout OR kubelet | stats count() by namespace",
        "* | timechart span=1h count() by namespace",
        "dataset:audit | fields namespace, verb | sort namespace | head 1000",
    ],
)
def test_every_query_shape_is_scoped(filled: Store, query: str) -> None:
    full = _search(filled, query)
    scoped = _search(filled, query, namespaces=ALLOWED)
    seen = set(_namespaces(scoped))
    assert seen and seen <= set(ALLOWED)
    assert len(set(_namespaces(full))) > len(seen)


def test_top_percentages_are_of_the_scoped_rows_only(filled: Store) -> None:
    """Shares are computed over the relation the viewer may read: they do not reveal the total."""
    rows = _search(filled, "* | top 10 namespace", namespaces=ALLOWED).to_pylist()
    assert len(rows) == 2 and sum(r["percent"] for r in rows) == pytest.approx(100.0)


def test_stats_counts_equal_the_unscoped_counts_of_the_allowed_namespace(filled: Store) -> None:
    query = "* | stats count() as n by kubernetes.namespace"
    full = _search(filled, query).to_pylist()
    scoped = _search(filled, query, namespaces=["payments"]).to_pylist()
    assert scoped == [r for r in full if r["kubernetes.namespace"] == "payments"]
    assert scoped[0]["n"] > 0


def test_where_and_streaming_paths_are_scoped(filled: Store) -> None:
    where = filled.search(where="message IS NOT NULL", since=T0 - HOUR, limit=10_000, namespaces=["web"])
    assert set(_namespaces(where.table)) == {"web"}
    batches = filled.search_batches("* | stats count() by namespace", since=T0 - HOUR, namespaces=["web"])
    rows = pa.Table.from_batches(list(batches)).to_pylist()
    assert [r["namespace"] for r in rows] == ["web"]
    assert rows[0]["count"] == _namespaces(_search(filled))["web"]


def test_empty_scope_reads_nothing_and_none_reads_everything(filled: Store) -> None:
    assert _search(filled, namespaces=[]).num_rows == 0
    assert _search(filled, "* | stats count() by namespace", namespaces=[]).num_rows == 0
    assert sum(b.num_rows for b in filled.search_batches(since=T0 - HOUR, namespaces=[])) == 0
    assert _search(filled, namespaces=["nonexistent"]).num_rows == 0
    assert _search(filled, namespaces=None).num_rows == 600 + 40 + 50 + 50 + 200


def test_segments_without_an_allowed_namespace_are_not_read(filled: Store) -> None:
    assert len(filled.scan_set().files) == 5  # hours 0-2 (mixed + node logs), web-only, kube-system-only
    web = filled.scan_set(namespaces=["web"]).files
    system = filled.scan_set(namespaces=["kube-system"]).files
    assert len(web) == len(system) == 4 and set(web) != set(system)
    assert filled.scan_set(namespaces=[]).files == []
    assert filled.scan_set(namespaces=["nonexistent"]).files == []


def test_every_part_of_the_relation_is_scoped_row_ranges_included(filled: Store) -> None:
    """Segment groups, single files read by token-index row ranges and the tail all carry the scope."""
    scan = filled.scan_set(since=T0 - HOUR, namespaces=["web"])
    first = scan.files[0]
    scan.row_ranges = {first: [(0, 10**6)]}  # read on its own, through the block-range path
    run = QueryRun(scan, filled.config.limits)
    try:
        parts = run.relation_sql.split(" UNION ALL BY NAME ")
        assert len(parts) == 3  # the grouped files, the ranged file, the tail
        assert all("\"kubernetes.namespace\" IN ('web')" in part for part in parts)
        table = run.table("SELECT * FROM logs", max_rows=100_000)
    finally:
        run.close()
    assert set(_namespaces(table)) == {"web"}
    assert table.num_rows == _namespaces(_search(filled))["web"]


def test_namespace_values_are_literals_not_sql(filled: Store) -> None:
    assert _search(filled, namespaces=["web') OR (1=1", "x' OR '1'='1"]).num_rows == 0
