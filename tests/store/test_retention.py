from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetrail.store import Store, StoreConfig
from kubetrail.store.config import ArchiveConfig, CompactionConfig, RetentionConfig, RetentionPolicy
from kubetrail.store.retention import compact, enforce, purge_superseded
from tests.store.conftest import T0, make_batch

HOUR = 3600 * 10**9
DAY = 24 * HOUR


def count(store: Store, where: str = "TRUE", include_archive: bool = False) -> int:
    sql = f"SELECT count(*) AS n FROM logs WHERE {where} AND \"event.dataset\" <> 'internal'"
    return int(store.sql(sql, include_archive=include_archive).column("n")[0].as_py())


def audit_events(store: Store) -> list[dict[str, object]]:
    t = store.sql('SELECT "event.action" AS a, attributes FROM logs WHERE "event.dataset" = \'internal\'')
    return [{"action": r["a"], **json.loads(r["attributes"])} for r in t.to_pylist()]


def make_store(tmp_path: Path, **retention: object) -> Store:
    cfg = StoreConfig(retention=RetentionConfig(**retention), delete_grace_secs=0)  # type: ignore[arg-type]
    s = Store(tmp_path / "s", cfg)
    s.append(make_batch(3000, seed=1, start_ns=T0, span_ns=2 * HOUR))  # day 0
    s.append(make_batch(3000, seed=2, start_ns=T0 + 10 * DAY, span_ns=2 * HOUR, id_prefix="f"))  # day 10
    s.flush()
    return s


def test_policy_per_namespace_is_row_precise_with_audit(tmp_path: Path) -> None:
    policies = [RetentionPolicy(namespace="web", max_age_days=5)]
    s = make_store(tmp_path, policies=policies, default_max_age_days=30)
    before_web_old = count(
        s,
        f'"kubernetes.namespace" = \'web\' AND "@timestamp" < make_timestamp_ns({T0 + DAY})::TIMESTAMPTZ_NS',
    )
    before = count(s)
    report = enforce(s, now_ns=T0 + 12 * DAY)
    assert report.deleted_rows == before_web_old > 0
    assert count(s) == before - before_web_old
    assert count(s, "\"kubernetes.namespace\" = 'web'") > 0  # the recent web rows stay
    events = audit_events(s)
    assert {e["action"] for e in events} == {"retention.delete"}
    assert sum(int(e["rows"]) for e in events) == before_web_old  # type: ignore[call-overload]
    assert all(e["reason"] == "max age exceeded" for e in events)
    # idempotent: nothing else expires at the same time
    assert enforce(s, now_ns=T0 + 12 * DAY).deleted_rows == 0
    s.close()


def test_default_age_deletes_whole_segments_and_files(tmp_path: Path) -> None:
    s = make_store(tmp_path, default_max_age_days=5)
    old_files = [s.root / seg.path for seg in s.catalog.segments(until_ns=T0 + DAY)]
    report = enforce(s, now_ns=T0 + 12 * DAY)
    assert report.deleted_segments == len(old_files) == 2
    assert count(s) == 3000
    assert not any(f.exists() for f in old_files)  # grace 0: purged in the same pass
    s.close()


def test_legal_hold_blocks_deletion(tmp_path: Path) -> None:
    s = make_store(tmp_path, default_max_age_days=5)
    hold = s.catalog.add_hold("case 42", namespace="payments", start_ns=T0, end_ns=T0 + DAY)
    held_rows = count(
        s,
        '"kubernetes.namespace" = \'payments\' AND "@timestamp" < make_timestamp_ns('
        + str(T0 + DAY)
        + ")::TIMESTAMPTZ_NS",
    )
    enforce(s, now_ns=T0 + 12 * DAY)
    assert count(s) == 3000 + held_rows
    assert count(s, "\"kubernetes.namespace\" = 'payments'") >= held_rows > 0
    s.catalog.remove_hold(hold)
    enforce(s, now_ns=T0 + 12 * DAY)
    assert count(s) == 3000
    s.close()


def test_segment_hold_keeps_whole_segment(tmp_path: Path) -> None:
    s = make_store(tmp_path, default_max_age_days=5)
    seg = s.catalog.segments(until_ns=T0 + DAY)[0]
    s.catalog.add_hold("evidence", segment_id=seg.id)
    enforce(s, now_ns=T0 + 12 * DAY)
    assert count(s) == 3000 + seg.rows
    s.close()


def test_size_cap_deletes_oldest_first(tmp_path: Path) -> None:
    s = make_store(tmp_path, default_max_age_days=None)
    total = s.stats()["hot_bytes"]
    enforce(s, now_ns=T0 + 12 * DAY)
    assert count(s) == 6000
    s.config.retention.max_total_bytes = total // 2 + 1
    report = enforce(s, now_ns=T0 + 12 * DAY)
    assert report.deleted_segments == 2
    assert count(s, f'"@timestamp" < make_timestamp_ns({T0 + DAY})::TIMESTAMPTZ_NS') == 0
    assert count(s) == 3000
    s.close()


def test_compaction_keeps_every_row(tmp_path: Path) -> None:
    s = Store(tmp_path / "s", StoreConfig(compaction=CompactionConfig(min_age_secs=0), delete_grace_secs=0))
    for i in range(5):
        s.append(make_batch(300, seed=i, start_ns=T0, span_ns=HOUR // 2, id_prefix=f"c{i}"))
        s.flush()
    before = sorted(s.sql('SELECT "event.id" FROM logs').column(0).to_pylist())
    assert len(s.catalog.segments()) == 5
    assert compact(s, now_ns=T0 + DAY) == 5
    assert len(s.catalog.segments()) == 1
    assert sorted(s.sql('SELECT "event.id" FROM logs').column(0).to_pylist()) == before
    r = s.search(where="\"event.id\" = 'c3-3-7'", needles=[("kubernetes.namespace", "web")])
    assert r.segments_total == 1
    purge_superseded(s)
    assert len(list((s.root / "segments").rglob("*.parquet"))) == 1
    # the purged segments' token filters leave no free pages behind in the catalog file
    assert s.catalog._db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    # dedup still holds after compaction and a restart
    s.close()
    s = Store(tmp_path / "s")
    assert s.append(make_batch(300, seed=2, start_ns=T0, span_ns=HOUR // 2, id_prefix="c2")) == 0
    s.close()


@pytest.mark.parametrize("partial", [False, True])
def test_archive_before_delete_local_dir(tmp_path: Path, partial: bool) -> None:
    policies = [RetentionPolicy(namespace="web", max_age_days=5)] if partial else []
    cfg = StoreConfig(
        retention=RetentionConfig(policies=policies, default_max_age_days=None if partial else 5),
        archive=ArchiveConfig(enabled=True, url=(tmp_path / "bucket").as_uri()),
        delete_grace_secs=0,
    )
    s = Store(tmp_path / "s", cfg)
    s.append(make_batch(2000, seed=1, start_ns=T0, span_ns=HOUR))
    s.append(make_batch(2000, seed=2, start_ns=T0 + 10 * DAY, span_ns=HOUR, id_prefix="f"))
    s.flush()
    everything = count(s)
    report = enforce(s, now_ns=T0 + 12 * DAY)
    assert report.archived_rows > 0 and report.deleted_rows == 0
    assert count(s) == everything - report.archived_rows
    assert count(s, include_archive=True) == everything
    assert list((tmp_path / "bucket").rglob("*.parquet"))
    restored = s.archive.restore(since=T0 - DAY, until=T0 + DAY)
    assert restored and count(s) == everything
    assert not list((tmp_path / "bucket").rglob("*.parquet"))
    s.close()


def test_run_maintenance_is_due_only_after_the_interval(tmp_path: Path) -> None:
    s = make_store(tmp_path, default_max_age_days=5)
    assert s.run_maintenance() is None  # not due yet
    report = s.run_maintenance(force=True)
    assert report is not None and report.deleted_segments == 4  # wall clock: both days are expired
    s.close()


def test_auto_maintenance_compacts_in_the_background_after_a_flush(tmp_path: Path) -> None:
    cfg = StoreConfig(
        compaction=CompactionConfig(min_age_secs=0, interval_secs=0.01),
        retention=RetentionConfig(default_max_age_days=None),
        delete_grace_secs=0,
    )
    s = Store(tmp_path / "s", cfg)
    for i in range(4):
        s.append(make_batch(200, seed=i, start_ns=T0, span_ns=HOUR // 2, id_prefix=f"a{i}"))
        s.flush()
    import time

    deadline = time.monotonic() + 10
    while len(s.catalog.segments()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        s.flush()  # a later flush (nothing to write) does not start another pass while one runs
    assert len(s.catalog.segments()) == 1
    assert s.sql("SELECT count(*) AS n FROM logs").column("n")[0].as_py() == 800
    s.close()
