from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.errors import QueryError, QueryTimeout, StorageError
from kubetrail.schema import from_pylist
from kubetrail.store import Store, StoreConfig
from kubetrail.store.config import QueryLimits
from tests.store.conftest import T0, make_batch

HOUR = 3600 * 10**9


def ids(table: pa.Table) -> list[str]:
    return sorted(table.column("event.id").to_pylist())


def test_appended_rows_are_searchable_at_once_without_flush(store: Store) -> None:
    batch = make_batch(500)
    started = time.monotonic()
    assert store.append(batch) == 500
    result = store.search(where="\"kubernetes.namespace\" = 'payments'", limit=10_000)
    assert time.monotonic() - started < 2.0
    expected = pc.sum(pc.equal(batch.column("kubernetes.namespace"), "payments")).as_py()
    assert result.table.num_rows == expected > 0
    assert store.stats().get("hot_segments", 0) == 0  # served from the tail


def test_flush_writes_hive_partitions_and_catalog(store: Store) -> None:
    store.append(make_batch(3000, span_ns=3 * HOUR))
    segments = store.flush()
    assert len(segments) == 3
    for seg in segments:
        assert seg.path.startswith("segments/dt=2025-11-27/hour=")
        assert (store.root / seg.path).is_file()
        assert seg.min_ts <= seg.max_ts and seg.min_ts // HOUR == seg.max_ts // HOUR
        assert seg.namespaces and set(seg.namespaces) <= {
            "default",
            "kube-system",
            "payments",
            "web",
            "monitoring",
        }
    assert store.sql("SELECT count(*) AS n FROM logs").column("n")[0].as_py() == 3000


def test_duplicates_are_dropped_within_batch_across_appends_and_restart(tmp_path: Path) -> None:
    root = tmp_path / "s"
    batch = make_batch(2000)
    with Store(root) as s:
        assert s.append(batch) == 2000
        assert s.append(batch.slice(100, 50)) == 0  # re-delivered while in the tail
        s.flush()
        assert s.append(batch.slice(0, 10)) == 0  # re-delivered after flush
        doubled = pa.Table.from_batches([make_batch(5, seed=9), make_batch(5, seed=9)])
        assert s.append(doubled) == 5  # duplicates inside one batch
    with Store(root) as s:  # restart: the seen-set is rebuilt from the segments
        assert s.append(batch) == 0
        assert s.append(make_batch(5, seed=9)) == 0
        assert s.append(make_batch(10, seed=3)) == 10
        assert s.sql('SELECT count(*) AS n, count(DISTINCT "event.id") AS d FROM logs').to_pylist() == [
            {"n": 2015, "d": 2015}
        ]


def test_rows_without_id_are_kept(store: Store) -> None:
    rows = [{"@timestamp": None, "message": "no id"}, {"message": "no id"}]
    assert store.append(from_pylist(rows)) == 2
    assert store.append(from_pylist(rows)) == 2
    table = store.search(limit=10).table
    assert table.num_rows == 4 and table.column("@timestamp").null_count == 0


def test_bad_batch_is_a_storage_error(store: Store) -> None:
    with pytest.raises(StorageError):
        store.append(pa.record_batch({"x": [1]}))


def test_token_pruning_skips_segments(store: Store) -> None:
    for i in range(4):
        store.append(make_batch(1000, seed=i, start_ns=T0 + i * HOUR, span_ns=HOUR // 2))
    store.append(from_pylist([{"@timestamp": T0 + 10, "event.id": "x", "message": "zebra-unicorn 42"}]))
    store.flush()
    r = store.search(where="message LIKE '%zebra-unicorn%'", needles=[("message", "zebra-unicorn")])
    assert r.table.num_rows == 1 and r.segments_total == 4 and r.segments_scanned == 1
    r = store.search(where="message LIKE '%zebra-unicorn%'", since=T0 + HOUR, until=T0 + 3 * HOUR)
    assert r.table.num_rows == 0 and r.segments_total == 2


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], int | None, int | None]:
    kind = draw(st.sampled_from(["ip", "ns", "word", "pod"]))
    if kind == "ip":
        v = f"10.{draw(st.integers(0, 4))}.{draw(st.integers(0, 8))}.{draw(st.integers(0, 16))}"
        where, needle = f"\"source.ip\" = '{v}'", ("source.ip", v)
    elif kind == "ns":
        v = draw(st.sampled_from(["web", "payments", "nope"]))
        where, needle = f"\"kubernetes.namespace\" = '{v}'", ("kubernetes.namespace", v)
    elif kind == "pod":
        v = f"web-pod-{draw(st.integers(0, 25))}"
        where, needle = f"\"kubernetes.pod.name\" = '{v}'", ("kubernetes.pod.name", v)
    else:
        v = str(draw(st.integers(0, 10**6)))
        where, needle = f"regexp_matches(message, '(^|[^0-9a-zA-Z]){v}($|[^0-9a-zA-Z])')", ("message", v)
    lo = draw(st.one_of(st.none(), st.integers(0, 6)))
    hi = draw(st.one_of(st.none(), st.integers(0, 6)))
    since = None if lo is None else T0 + lo * HOUR // 2
    until = None if hi is None else T0 + hi * HOUR // 2 + HOUR
    return where, [needle], since, until


@pytest.fixture(scope="module")
def multi_segment_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    # 64-row index blocks: most needles match a few blocks of a segment, so reads are restricted
    s = Store(
        tmp_path_factory.mktemp("prune") / "s", StoreConfig(flush_max_age_secs=3600, index_block_rows=64)
    )
    for i in range(6):
        s.append(make_batch(400, seed=10 + i, start_ns=T0 + i * HOUR // 2, span_ns=HOUR))
        s.flush()
    s.append(make_batch(200, seed=99, start_ns=T0, span_ns=3 * HOUR))  # stays in the tail
    return s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries())
def test_pruned_search_equals_full_scan(
    multi_segment_store: Store, q: tuple[str, list[tuple[str, str]], int | None, int | None]
) -> None:
    where, needles, since, until = q
    store = multi_segment_store
    pruned = store.search(where=where, needles=needles, since=since, until=until, limit=100_000)
    full = store.search(where=where, since=since, until=until, limit=100_000, prune=False)
    assert ids(pruned.table) == ids(full.table)
    assert pruned.segments_scanned <= full.segments_scanned


def test_needle_reads_only_the_matching_index_blocks(tmp_path: Path) -> None:
    s = Store(tmp_path / "s", StoreConfig(index_block_rows=64))
    s.append(make_batch(2000, seed=4, start_ns=T0, span_ns=HOUR // 2))
    s.append(from_pylist([{"@timestamp": T0 + 10, "event.id": "x", "message": "zebra-unicorn 42"}]))
    s.flush()
    scan = s.scan_set(needles=[("message", "zebra-unicorn")])
    [(_file, ranges)] = scan.row_ranges.items()
    assert sum(b - a + 1 for a, b in ranges) <= 2 * 64  # one block, maybe a false positive more
    r = s.search("zebra-unicorn")
    assert r.table.column("event.id").to_pylist() == ["x"]
    # rows are sorted by namespace: one namespace's rows are a few blocks, read alone
    ns = "\"kubernetes.namespace\" = 'payments'"
    scan = s.scan_set(needles=[("kubernetes.namespace", "payments")])
    assert scan.row_ranges
    pruned = s.search(where=ns, needles=[("kubernetes.namespace", "payments")], limit=10_000)
    assert ids(pruned.table) == ids(s.search(where=ns, limit=10_000, prune=False).table)
    s.close()


def test_text_search_limits_and_flags_truncation(tmp_path: Path) -> None:
    s = Store(tmp_path / "s", StoreConfig(limits=QueryLimits(max_rows=7)))
    s.append(make_batch(300))
    s.flush()
    s.append(make_batch(100, seed=5))  # in the tail: both parts of the relation are read
    everything = s.search("kubernetes.namespace:*", limit=1000)
    assert everything.table.num_rows == 7 and everything.truncated
    assert s.search("kubernetes.namespace:* | head 3", limit=1000).table.num_rows == 3
    assert not s.search("kubernetes.namespace:* | head 3", limit=1000).truncated
    counted = s.search("* | stats count() by event.dataset", limit=1000).table
    assert sum(counted.column("count").to_pylist()) == 400
    s.close()


def test_timeout_raises_query_timeout(tmp_path: Path) -> None:
    s = Store(tmp_path / "s", StoreConfig(limits=QueryLimits(timeout_secs=0.3)))
    s.append(make_batch(3000))
    started = time.monotonic()
    with pytest.raises(QueryTimeout) as info:
        s.sql("SELECT count(*) FROM logs a, logs b, logs c WHERE a.message < b.message || c.message")
    assert info.value.code == "KT-QUERY-TIMEOUT"
    assert time.monotonic() - started < 5
    s.close()


def test_max_rows_truncates(tmp_path: Path) -> None:
    s = Store(tmp_path / "s", StoreConfig(limits=QueryLimits(max_rows=7)))
    s.append(make_batch(100))
    r = s.search(limit=1000)
    assert r.table.num_rows == 7 and r.truncated
    assert s.search(limit=3).table.num_rows == 3
    assert not s.search(where="\"event.id\" = 'e-0-1'").truncated
    s.close()


def test_cancel_from_another_thread(store: Store) -> None:
    import threading

    from kubetrail.errors import QueryCancelled

    store.append(make_batch(10))
    run = store.open_query(store.scan_set())
    threading.Timer(0.3, run.cancel).start()
    with pytest.raises(QueryCancelled):
        run.table("SELECT count(*) FROM range(100000000000) a, logs")
    run.close()


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM logs",
        "SELECT 1; SELECT 2",
        "COPY logs TO '/tmp/x.csv'",
        "SELECT * FROM read_csv('/etc/hostname')",
        "SELECT * FROM '/etc/hostname'",
        "SET memory_limit='100GB'",
    ],
)
def test_sql_is_read_only_and_sandboxed(store: Store, sql: str) -> None:
    store.append(make_batch(5))
    with pytest.raises(QueryError):
        store.sql(sql)


def test_time_parsing() -> None:
    from kubetrail.store import to_ns

    now = 10**18
    assert to_ns("24h", now) == now - 24 * HOUR
    assert to_ns("2025-11-27T00:00:00Z") == T0
    with pytest.raises(QueryError):
        to_ns("yesterday-ish")


def test_segments_with_an_older_schema_stay_readable(store: Store) -> None:
    """Files of different schemas are read per schema group and unioned by name (schema evolution)."""
    from kubetrail.store.segments import write_segment

    store.append(make_batch(100))
    store.flush()
    old = pa.Table.from_batches([make_batch(50, seed=5, id_prefix="old")])
    old = old.drop_columns(
        ["kubernetes.namespace_labels", "attributes"]
    )  # a segment from before they existed
    info, bloom = write_segment(old, store.root, T0 // HOUR, ["@timestamp"])
    store.catalog.add_segment(info, bloom)
    scan = store.scan_set()
    assert len(scan.file_groups()) == 2
    table = store.search(limit=1000).table
    assert table.num_rows == 150
    assert table.column("attributes").null_count >= 50


def test_memory_limit_is_a_query_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "s", StoreConfig(limits=QueryLimits(memory_limit="20MB")))
    s.append(make_batch(20_000))
    s.flush()
    with pytest.raises(QueryError) as info:
        s.sql(
            "SELECT a.message, string_agg(b.message, ',') FROM logs a, logs b "
            'WHERE a."kubernetes.namespace" = b."kubernetes.namespace" GROUP BY a.message'
        )
    assert "memory" in str(info.value).lower()
    s.close()


def test_streamed_text_search_stops_at_the_limit(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    s.append(make_batch(3000))
    s.flush()
    s.append(make_batch(500, seed=7, id_prefix="tail"))
    streamed = [b for b in s.search_batches("kubernetes.namespace:web", limit=25, since=None) if b.num_rows]
    rows = pa.Table.from_batches(streamed)
    assert rows.num_rows == 25
    assert set(rows.column("kubernetes.namespace").to_pylist()) == {"web"}
    whole = s.search("kubernetes.namespace:web", limit=25).table
    assert rows.column("@timestamp").to_pylist() == whole.column("@timestamp").to_pylist()
    s.close()
