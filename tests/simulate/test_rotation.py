"""Rotated names as kubelet, docker and kube-apiserver (lumberjack) produce them."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from kubetrail.simulate import SimulationReport
from kubetrail.simulate.arrowtext import to_arrow
from kubetrail.simulate.rotation import (
    AUDIT_ROTATED_RE,
    KUBELET_ROTATED_RE,
    audit_rotated_name,
    kubelet_rotated_name,
    segments,
    write_kubelet_log,
)

T0 = 1_767_268_800_000_000_000  # 2026-01-01T12:00:00Z


def test_names() -> None:
    assert kubelet_rotated_name("0.log", T0) == "0.log.20260101-120000"
    assert audit_rotated_name(T0 + 123_456_789) == "audit-2026-01-01T12-00-00.123.log"
    assert KUBELET_ROTATED_RE.match("0.log.20260101-120000.gz")
    assert AUDIT_ROTATED_RE.match("audit-2026-01-01T12-00-00.000.log")


def test_segments() -> None:
    sizes = np.array([40, 40, 40, 40, 40])
    # kubelet: rotate once past the size; lumberjack: never exceed it
    assert segments(sizes, 100, before=False) == [(0, 3), (3, 5)]
    assert segments(sizes, 100, before=True) == [(0, 2), (2, 4), (4, 5)]
    assert segments(np.array([500, 10]), 100, before=True) == [(0, 1), (1, 2)]


def test_kubelet_keeps_max_files_and_gzips_older(tmp_path: Path) -> None:
    units = to_arrow([f"line {i:04d}\n" for i in range(100)])
    ts = T0 + np.arange(100, dtype=np.int64) * 60 * 1_000_000_000
    result = write_kubelet_log(tmp_path / "0.log", units, ts, 100, max_files=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "0.log" in names
    rotated = [n for n in names if n != "0.log"]
    assert len(rotated) == 2
    assert all(KUBELET_ROTATED_RE.match(n) for n in rotated)
    assert sum(n.endswith(".gz") for n in rotated) == 1  # the newest rotated file stays plain
    gz = next(n for n in rotated if n.endswith(".gz"))
    plain = next(n for n in rotated if not n.endswith(".gz"))
    assert gz.removesuffix(".gz") < plain
    kept = sum(f.lines for f in result.files)
    deleted = sum(b - a for a, b in result.deleted_units)
    assert kept + deleted == 100
    text = gzip.decompress((tmp_path / gz).read_bytes()) + (tmp_path / plain).read_bytes()
    text += (tmp_path / "0.log").read_bytes()
    assert text.decode().splitlines() == [f"line {i:04d}" for i in range(deleted, 100)]


def test_simulation_rotates_container_and_audit_logs(small_sim: SimulationReport) -> None:
    root = small_sim.root
    rotated = [p for p in root.glob("*/var/log/pods/*/*/*") if not p.name.endswith(".log")]
    assert rotated, "the small run forces container log rotation"
    for p in rotated:
        assert KUBELET_ROTATED_RE.match(p.name), p.name
        assert (p.parent / f"{KUBELET_ROTATED_RE.match(p.name)['restart']}.log").exists()  # type: ignore[index]
    assert any(p.name.endswith(".gz") for p in rotated)
    audit_dir = root / "kt-control-plane/var/log/kubernetes/audit"
    backups = [p.name for p in audit_dir.iterdir() if p.name != "audit.log"]
    assert backups and all(AUDIT_ROTATED_RE.match(n) for n in backups)
    for p in audit_dir.iterdir():
        assert p.stat().st_size <= 400_000  # lumberjack never lets a file pass --audit-log-maxsize
    docker = [p.name for p in root.glob("kt-worker-2/var/lib/docker/containers/*/*")]
    assert any(re.match(r"^[0-9a-f]{64}-json\.log\.\d+$", n) for n in docker)
