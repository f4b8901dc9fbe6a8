"""Segment encoding: ``event.id`` stored as prefix + ``log.offset`` and recomposed on every read path."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.schema import conform
from kubetrail.store import Store, StoreConfig
from kubetrail.store.codec import ID_PREFIX_COLUMN, join_event_id, split_event_id
from kubetrail.store.config import CompactionConfig
from kubetrail.store.retention import compact, purge_superseded
from kubetrail.store.segments import read_segment
from tests.store.conftest import T0, make_batch

ids = st.one_of(
    st.none(),
    st.text(alphabet="ab-0123456789", max_size=12),
    st.builds(
        lambda p, o: f"{p}-{o}", st.text(alphabet="0123456789abcdef-", max_size=20), st.integers(0, 10**6)
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ids, st.one_of(st.none(), st.integers(-5, 10**6))), max_size=30))
def test_split_then_join_is_the_identity(rows: list[tuple[str | None, int | None]]) -> None:
    table = pa.table(
        {
            "event.id": pa.array([r[0] for r in rows], pa.string()),
            "log.offset": pa.array([r[1] for r in rows], pa.int64()),
        }
    )
    stored = split_event_id(table)
    assert stored.column_names == ["event.id", "log.offset", ID_PREFIX_COLUMN]
    assert join_event_id(stored).equals(table)
    assert join_event_id(split_event_id(stored)).equals(table)  # idempotent on split input


def _file_lines(n: int, prefix: str = "0123456789abcdef0123") -> pa.RecordBatch:
    """A batch shaped like tailed file lines: event.id = <file prefix>-<log.offset>."""
    base = make_batch(n, seed=3).to_pydict()
    offsets = np.cumsum(np.random.default_rng(1).integers(50, 300, n))
    base["log.offset"] = offsets.tolist()
    base["event.id"] = [f"{prefix}-{o}" for o in offsets]
    base["event.id"][0] = "custom-id-without-offset"
    return conform({k: pa.array(v, conform({}, 0).schema.field(k).type) for k, v in base.items()}, n)


def test_ids_are_stored_split_and_read_back_whole(tmp_path: Path) -> None:
    store = Store(
        tmp_path / "s",
        StoreConfig(
            flush_max_age_secs=3600,
            delete_grace_secs=0,
            compaction=CompactionConfig(small_segment_bytes=1 << 40, min_age_secs=0),
        ),
    )
    batch = _file_lines(3000)
    expected = sorted(batch.column("event.id").to_pylist())
    half = batch.num_rows // 2
    store.append(batch.slice(0, half))
    store.flush()
    store.append(batch.slice(half))
    store.flush()
    files = list((tmp_path / "s" / "segments").rglob("*.parquet"))
    raw = pq.read_table(files[0])
    assert raw.column("event.id").null_count >= raw.num_rows - 1  # only the custom id is kept as is
    got = store.sql('SELECT "event.id" AS id FROM logs ORDER BY id', limit=10**6).column("id").to_pylist()
    assert got == expected
    assert sorted(read_segment(files[0], ["event.id"]).column(0).to_pylist()) == sorted(
        read_segment(files[0]).column("event.id").to_pylist()
    )
    target = batch.column("event.id")[7].as_py()
    hit = store.search(f'event.id:"{target}"')
    assert hit.table.column("event.id").to_pylist() == [target]
    assert ID_PREFIX_COLUMN not in hit.table.column_names
    assert store.append(batch) == 0  # re-delivery is recognized from the split ids
    assert compact(store, now_ns=time.time_ns() + 10**15) == 2
    purge_superseded(store)
    got = store.sql('SELECT "event.id" AS id FROM logs ORDER BY id', limit=10**6).column("id").to_pylist()
    assert got == expected
    store.close()
    reopened = Store(tmp_path / "s", StoreConfig(flush_max_age_secs=3600))
    assert reopened.append(batch) == 0  # dedup rebuilt from segments after a restart
    reopened.close()


def test_time_window_query_on_split_segments(store: Store) -> None:
    batch = _file_lines(500)
    store.append(batch)
    store.flush()
    table = store.search(None, since=T0, until=T0 + 10**18, limit=10**6).table
    assert sorted(table.column("event.id").to_pylist()) == sorted(batch.column("event.id").to_pylist())


def test_split_ids_survive_archive_round_trip_and_row_precise_expiry(tmp_path: Path) -> None:
    from kubetrail.store.config import ArchiveConfig, RetentionConfig, RetentionPolicy
    from kubetrail.store.retention import enforce

    day = 24 * 3600 * 10**9
    cfg = StoreConfig(
        flush_max_age_secs=3600,
        delete_grace_secs=0,
        retention=RetentionConfig(
            default_max_age_days=None, policies=[RetentionPolicy(namespace="web", max_age_days=1)]
        ),
        archive=ArchiveConfig(enabled=True, after_days=5, before_delete=False),
    )
    store = Store(tmp_path / "s", cfg)
    batch = _file_lines(2000)
    store.append(batch)
    store.flush()
    ns = batch.column("kubernetes.namespace").to_pylist()
    kept = sorted(i for i, n in zip(batch.column("event.id").to_pylist(), ns, strict=True) if n != "web")
    report = enforce(store, now_ns=T0 + 3 * day)  # rewrites the segment without the expired web rows
    assert report.deleted_rows > 0
    sql = """SELECT "event.id" AS id FROM logs WHERE "event.dataset" <> 'internal' ORDER BY id"""
    assert store.sql(sql, limit=10**6).column("id").to_pylist() == kept
    enforce(store, now_ns=T0 + 6 * day)  # now archived
    assert store.catalog.segments(tiers=("archive",))
    archived = store.search(
        None, since=T0 - day, until=T0 + day, limit=10**6, include_archive=True, where='"log.offset" > 0'
    )
    assert sorted(archived.table.column("event.id").to_pylist()) == kept
    store.close()
