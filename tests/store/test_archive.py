from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetrail.store import Store, StoreConfig
from kubetrail.store.config import ArchiveConfig, RetentionConfig
from kubetrail.store.retention import enforce
from tests.store.conftest import T0, make_batch

HOUR = 3600 * 10**9
DAY = 24 * HOUR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    ).create_bucket(Bucket="kubetrail-archive")
    yield endpoint
    server.stop()


def test_archive_round_trip_s3(tmp_path: Path, s3_endpoint: str) -> None:
    cfg = StoreConfig(
        retention=RetentionConfig(default_max_age_days=None),
        archive=ArchiveConfig(
            enabled=True,
            after_days=5,
            url="s3://kubetrail-archive/cluster-a",
            endpoint=s3_endpoint,
            access_key_id="t",
            secret_access_key="t",
            allow_http=True,
        ),
    )
    s = Store(tmp_path / "s", cfg)
    s.append(make_batch(1500, seed=1, start_ns=T0, span_ns=HOUR))
    s.append(make_batch(1500, seed=2, start_ns=T0 + 10 * DAY, span_ns=HOUR, id_prefix="f"))
    s.flush()
    report = enforce(s, now_ns=T0 + 11 * DAY)
    assert report.archived_segments == 1
    seg = s.catalog.segments(tiers=("archive",))[0]
    assert seg.archive_key and seg.archive_key.startswith("segments/dt=2025-11-27/hour=00/")
    assert not (s.root / seg.path).exists()
    where = "\"kubernetes.namespace\" = 'web'"
    hot = s.search(where=where, limit=10_000).table.num_rows
    both = s.search(where=where, limit=10_000, include_archive=True)
    assert both.table.num_rows > hot > 0
    # pruning also applies to archived segments: a needle absent there downloads nothing new
    s.archive.restore(since=T0 - HOUR, until=T0 + DAY)
    assert s.search(where=where, limit=10_000).table.num_rows == both.table.num_rows
    assert s.catalog.segments(tiers=("archive",)) == []
    # a restart sees the same catalog; re-appending archived-then-restored events stores nothing
    s.close()
    s = Store(tmp_path / "s", cfg)
    assert s.append(make_batch(1500, seed=1, start_ns=T0, span_ns=HOUR)) == 0
    s.close()
