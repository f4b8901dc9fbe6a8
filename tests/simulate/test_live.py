"""Live mode: appends at a rate, rotates by rename or copytruncate, and accounts every line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from kubetrail.simulate import SimulationOptions, extract_seq
from kubetrail.simulate.live import LiveOptions, LiveSimulator
from kubetrail.simulate.report import SimulationReport
from kubetrail.simulate.rotation import AUDIT_ROTATED_RE, KUBELET_ROTATED_RE

from .test_truth import records

pytestmark = pytest.mark.integration


def _check_streams(report: SimulationReport) -> None:
    for stream, info in report.streams.items():
        seen: Counter[int] = Counter()
        for rec in records(report.root, info):
            ((s, n),) = extract_seq(rec)
            assert s == stream
            seen[n] += 1
        deleted = {n for a, b in info.deleted for n in range(a, b)}
        assert set(seen) | deleted == set(range(info.lines)), stream
        assert not seen or max(seen.values()) == 1


@pytest.mark.parametrize("copytruncate", [False, True])
def test_live_rotation_and_accounting(tmp_path: Path, copytruncate: bool) -> None:
    opts = SimulationOptions(
        rotate_bytes=40_000,
        rotate_keep=50,
        audit_rotate_bytes=150_000,
        audit_keep=50,
        copytruncate=copytruncate,
    )
    sim = LiveSimulator(tmp_path / "live", opts, LiveOptions(rate=3000, containers=20, audit_rate=150))
    inode: dict[str, int] = {}

    def watch() -> None:  # remember 0.log inodes once the files exist
        time.sleep(0.5)
        for p in (tmp_path / "live").glob("*/var/log/pods/*/*/0.log"):
            inode[str(p)] = p.stat().st_ino

    t = threading.Thread(target=watch)
    t.start()
    report = sim.run(2.5)
    t.join()
    assert (
        3000 * 2.5 * 0.6
        < report.layers["container"].lines + report.layers["controlplane"].lines
        < 3000 * 2.5 * 1.3
    )
    rotated = [p for p in report.root.glob("*/var/log/pods/*/*/*") if p.name != "0.log"]
    assert rotated and all(KUBELET_ROTATED_RE.match(p.name) for p in rotated)
    assert any(p.name.endswith(".gz") for p in rotated)
    audit = [p.name for p in report.root.glob("*/var/log/kubernetes/audit/*") if p.name != "audit.log"]
    assert audit and all(AUDIT_ROTATED_RE.match(n) for n in audit)
    same_inode = [os.stat(p).st_ino == i for p, i in inode.items()]
    assert inode
    if copytruncate:
        assert all(same_inode)  # copytruncate keeps the file, rename replaces it
    else:
        assert not all(same_inode)
    manifest = json.loads((report.root / "manifest.json").read_text())
    assert manifest["live"] is True
    _check_streams(report)


def _lines(root: Path) -> int:
    try:
        streams = json.loads((root / "manifest.json").read_text()).get("streams", {})
    except (OSError, ValueError):
        return 0
    return sum(s["lines"] for s in streams.values())


def test_live_subprocess_stops_on_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "live"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubetrail",
            "simulate",
            "--root",
            str(root),
            "--live",
            "--rate",
            "1000",
            "--containers",
            "10",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60  # the machine may be busy: wait for lines, not for a fixed time
        while time.monotonic() < deadline and _lines(root) < 300:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["streams"] == summary["streams"]
    assert sum(s["lines"] for s in manifest["streams"].values()) >= 300


def test_live_attacks_play_over_the_window(tmp_path: Path) -> None:
    live = LiveOptions(rate=2000, containers=12, audit_rate=100, attack_window_s=2.0)
    report = LiveSimulator(tmp_path / "live", SimulationOptions(), live).run(4.0)
    truth = [json.loads(line) for line in (report.root / "truth.jsonl").read_text().splitlines()]
    assert len(truth) == 14, [t["name"] for t in truth]
    found: dict[str, set[int]] = {}
    for stream, info in report.streams.items():
        found[stream] = {n for rec in records(report.root, info) for _, n in extract_seq(rec)}
    for t in truth:
        assert t["seq_ids"], t["name"]
        for sid in t["seq_ids"]:
            stream, n = sid.rsplit(":", 1)
            assert int(n) in found[stream], (t["name"], sid)
    miner = next(t for t in truth if t["name"] == "crypto-miner")
    assert miner["streams"] and report.streams[miner["streams"][0]].lines > 4
    _check_streams(report)


def test_live_docker_node_rotates_like_docker(tmp_path: Path) -> None:
    opts = SimulationOptions(nodes=2, docker_nodes=1, rotate_bytes=30_000, rotate_keep=100)
    report = LiveSimulator(tmp_path / "live", opts, LiveOptions(rate=2000, containers=30, audit_rate=20)).run(
        2.0
    )
    docker = [p.name for p in report.root.glob("kt-worker-1/var/lib/docker/containers/*/*")]
    assert any(n.endswith("-json.log") for n in docker)
    assert any(re.match(r"^[0-9a-f]{64}-json\.log\.\d+$", n) for n in docker)
    link = next(report.root.glob("kt-worker-1/var/log/containers/*.log"))
    assert link.resolve().name.endswith("-json.log")
    assert {i.format for i in report.streams.values()} >= {"cri", "docker", "journald", "klog", "audit"}
    _check_streams(report)
