"""Batch simulation: determinism, kubelet layout, seq ids."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from kubetrail.simulate import SimulationOptions, SimulationReport, simulate_batch
from kubetrail.simulate.seq import SEQ_RE

POD_DIR_RE = re.compile(r"^(?P<ns>[a-z0-9-]+)_(?P<pod>[a-z0-9.-]+)_(?P<uid>[0-9a-f-]{32,36})$")
LINK_RE = re.compile(
    r"^(?P<pod>[a-z0-9.-]+)_(?P<ns>[a-z0-9-]+)_(?P<container>[a-z0-9-]+)-(?P<id>[0-9a-f]{64})\.log$"
)
RESTART_RE = re.compile(r"^\d+\.log$")


def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            out[rel] = (
                ("link:" + os.readlink(p)) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
            )
    return out


def test_same_seed_gives_byte_identical_tree(tmp_path: Path) -> None:
    opts = SimulationOptions(nodes=2, hours=0.02, seed=3, docker_nodes=1, rotate_bytes=50_000)
    simulate_batch(tmp_path / "a", opts)
    simulate_batch(tmp_path / "b", opts)
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert a == b
    assert len(a) > 20
    simulate_batch(tmp_path / "c", opts.model_copy(update={"seed": 4}))
    assert tree_digest(tmp_path / "c") != a


@pytest.mark.integration  # spawns worker processes
def test_worker_processes_write_the_same_bytes(tmp_path: Path) -> None:
    opts = SimulationOptions(nodes=2, hours=0.02, seed=9, docker_nodes=1, rotate_bytes=50_000)
    one = simulate_batch(tmp_path / "one", opts)
    two = simulate_batch(tmp_path / "two", opts, workers=2)
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    assert one.manifest() == two.manifest()
    assert [a.to_json() for a in one.attacks] == [a.to_json() for a in two.attacks]


def test_rerun_into_same_root_replaces_it(tmp_path: Path) -> None:
    opts = SimulationOptions(nodes=1, hours=0.01, seed=1)
    simulate_batch(tmp_path / "x", opts)
    first = tree_digest(tmp_path / "x")
    simulate_batch(tmp_path / "x", opts)
    assert tree_digest(tmp_path / "x") == first


def test_refuses_foreign_non_empty_root(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        simulate_batch(tmp_path, SimulationOptions(nodes=1, hours=0.01))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_kubelet_layout(small_sim: SimulationReport) -> None:
    root = small_sim.root
    nodes = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert nodes == ["kt-control-plane", "kt-worker-1", "kt-worker-2"]
    links = 0
    for node in nodes:
        pods = root / node / "var/log/pods"
        for pod_dir in pods.iterdir():
            assert POD_DIR_RE.match(pod_dir.name), pod_dir.name
            for cdir in pod_dir.iterdir():
                names = [p.name for p in cdir.iterdir()]
                assert any(RESTART_RE.match(n) for n in names), names
        for link in (root / node / "var/log/containers").iterdir():
            m = LINK_RE.match(link.name)
            assert m, link.name
            assert link.is_symlink()
            target = os.readlink(link)
            assert not os.path.isabs(target), "links are relative so the tree can be moved"
            resolved = link.resolve()
            assert resolved.is_file()
            assert resolved.is_relative_to(root.resolve())
            rel = link.parent.joinpath(target)
            # <pod>_<ns>_<container>-<id>.log -> ../pods/<ns>_<pod>_<uid>/<container>/<restart>.log
            pod_dir, container, restart = rel.parts[-3:]
            assert pod_dir.startswith(f"{m['ns']}_{m['pod']}_") and container == m["container"]
            assert RESTART_RE.match(restart)
            links += 1
    assert links >= 25
    assert (root / "kt-control-plane/var/log/kubernetes/audit/audit.log").is_file()
    for node in nodes:
        for rel in (
            "var/log/kubelet.log",
            "var/log/containerd.log",
            "var/log/syslog",
            "journal/kubelet.json",
            "journal/containerd.json",
        ):
            assert (root / node / rel).is_file(), (node, rel)


def test_control_plane_static_pods(small_sim: SimulationReport) -> None:
    pods = small_sim.root / "kt-control-plane/var/log/pods"
    names = {p.name.split("_")[1] for p in pods.iterdir() if p.name.startswith("kube-system_")}
    for comp in ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "etcd"):
        assert f"{comp}-kt-control-plane" in names
    assert small_sim.layers["controlplane"].lines > 0


def test_docker_node_writes_json_file(small_sim: SimulationReport) -> None:
    docker = small_sim.root / "kt-worker-2/var/lib/docker/containers"
    files = list(docker.glob("*/*-json.log"))
    assert files
    first = files[0].read_text(errors="replace").splitlines()[0]
    assert re.match(r'^\{"log":".*","stream":"std(out|err)","time":"[0-9T:.-]+Z"\}$', first)
    pods_link = next((small_sim.root / "kt-worker-2/var/log/pods").glob("*/*/0.log"))
    assert pods_link.is_symlink() and pods_link.resolve().name.endswith("-json.log")


def test_report_counts_match_manifest_and_disk(small_sim: SimulationReport) -> None:
    total = sum(s.lines for s in small_sim.streams.values())
    assert total == small_sim.lines + sum(b - a for s in small_sim.streams.values() for a, b in s.deleted)
    for layer, stats in small_sim.layers.items():
        assert stats.files > 0 and stats.lines > 0 and stats.bytes > 0, layer
    on_disk = sum((small_sim.root / f).stat().st_size for s in small_sim.streams.values() for f in s.files)
    assert on_disk == small_sim.bytes


def test_plain_lines_carry_one_seq_token(small_sim: SimulationReport) -> None:
    kubelet = (small_sim.root / "kt-worker-1/var/log/kubelet.log").read_text().splitlines()
    ids = [SEQ_RE.findall(line) for line in kubelet]
    assert all(len(x) == 1 for x in ids)
    assert [int(x[0][1]) for x in ids] == list(range(len(kubelet)))
    assert {x[0][0] for x in ids} == {"n1.kubelet"}


def test_start_time_option(tmp_path: Path) -> None:
    simulate_batch(tmp_path / "s", SimulationOptions(nodes=1, hours=0.01, start="2025-06-01T08:30:00Z"))
    first = (tmp_path / "s/kt-control-plane/var/log/kubelet.log").read_text().splitlines()[0]
    assert first.startswith("I0601 08:3")
    audit = (tmp_path / "s/kt-control-plane/var/log/kubernetes/audit/audit.log").read_text()
    assert '"stageTimestamp":"2025-06-01T08:3' in audit
