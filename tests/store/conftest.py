"""Fixtures for the store tests: realistic full-schema batches built with numpy (no per-row Python)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kubetrail.schema import TIMESTAMP, conform
from kubetrail.store import Store, StoreConfig

T0 = 1_764_201_600 * 10**9  # 2025-11-27T00:00:00Z
NAMESPACES = ["default", "kube-system", "payments", "web", "monitoring"]
VERBS = ["get", "list", "watch", "create", "delete", "patch"]
WORDS = ["GET", "POST", "request", "served", "connection", "timeout", "user", "ok", "error", "retry"]


def make_batch(
    n: int, seed: int = 0, start_ns: int = T0, span_ns: int = 3 * 3600 * 10**9, id_prefix: str = "e"
) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    ts = start_ns + np.sort(rng.integers(0, span_ns, n))
    ns = np.array(NAMESPACES)[rng.integers(0, len(NAMESPACES), n)]
    pods = pa.compute.binary_join_element_wise(
        pa.array(ns), pa.array(rng.integers(0, 20, n).astype(str)), "-pod-"
    )
    ips = pa.compute.binary_join_element_wise(
        pa.array(np.full(n, "10")),
        pa.array(rng.integers(0, 4, n).astype(str)),
        pa.array(rng.integers(0, 8, n).astype(str)),
        pa.array(rng.integers(0, 16, n).astype(str)),
        ".",
    )
    w = np.array(WORDS)
    msg = pa.compute.binary_join_element_wise(
        pa.array(w[rng.integers(0, len(w), n)]),
        pa.array(w[rng.integers(0, len(w), n)]),
        ips,
        pa.array(rng.integers(0, 10**6, n).astype(str)),
        " ",
    )
    datasets = np.where(rng.random(n) < 0.2, "audit", "container")
    cols = {
        "@timestamp": pa.array(ts, pa.int64()).cast(TIMESTAMP),
        "event.id": pa.compute.binary_join_element_wise(
            pa.array(np.full(n, id_prefix)), pa.array(np.arange(n).astype(str)), f"-{seed}-"
        ),
        "event.dataset": pa.array(datasets),
        "kubernetes.namespace": pa.array(ns),
        "kubernetes.pod.name": pods,
        "kubernetes.container.name": pa.array(np.where(rng.random(n) < 0.5, "app", "sidecar")),
        "kubernetes.container.restart_count": pa.array(rng.integers(0, 2, n), pa.int32()),
        "source.ip": ips,
        "user.name": pa.array(np.array(["alice", "bob", "system:admin"])[rng.integers(0, 3, n)]),
        "kubernetes.audit.verb": pa.array(np.array(VERBS)[rng.integers(0, len(VERBS), n)]),
        "message": msg,
    }
    return conform(cols, n)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store", StoreConfig(flush_max_age_secs=3600))
    yield s
    s.close()
