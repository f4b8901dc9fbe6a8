"""Acceptance: no loss and no duplicates through kill -9, server outages and rotation (real processes).

The workload is the simulator's live mode (``kubetrail.simulate.live``): two simulated nodes' worth of
real kubelet layouts, one rotating container logs by rename and one by copytruncate (older rotated files
gzip'd as the kubelet does), a kube-apiserver audit log rotated by rename, kubelet klog files, and a
journal read through a fake ``journalctl`` on PATH (it stands in for journald because this container
has no systemd). ``KT_FAULT_WRITER=own`` uses the tests' own small writer instead (same conventions).
The agent is kill -9'ed at random intervals and restarted; the receiver (a real HTTP server process
that fsyncs before acknowledging) is stopped twice. Afterwards every sequence id must be stored exactly
once after dedup by event id (stream identity + byte offset): lost = 0, duplicated = 0. Raw re-sends
are reported.

CI runs a short version (40 s, 400 kB rotation, two 6 s outages, kills every 2-5 s); the full acceptance
run (5k lines/s for 300 s, 5 MB rotation, two 30 s outages, kills every 2-10 s) is
``KT_FAULT_FULL=1 KT_FAULT_REPORT=report.json pytest tests/agent/test_fault.py -s``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent.conftest import HERE, REPO, AgentProcess, Receiver, agent_config, tally

FULL = os.environ.get("KT_FAULT_FULL") == "1"
WRITER = os.environ.get("KT_FAULT_WRITER", "simulator")

SIMULATOR = """
import sys
from kubetrail.simulate.live import LiveOptions, LiveSimulator
from kubetrail.simulate.options import SimulationOptions
root, rate, containers, duration, rotate, copytruncate, pad = sys.argv[1:8]
options = SimulationOptions(
    nodes=1, rotate_bytes=int(rotate), copytruncate=copytruncate == "1",
    audit_rotate_bytes=max(4096, int(rotate) // 4), attacks=False,
)
LiveSimulator(root, options, LiveOptions(rate=float(rate), containers=int(containers), audit_rate=100)).run(
    float(duration)
)
"""


class Workload:
    """Writers of real log layouts plus what they promise to have written."""

    def __init__(self, tmp: Path, kind: str, duration: float, rotate: int, full: bool) -> None:
        self.tmp, self.kind, self.duration, self.rotate, self.full = tmp, kind, duration, rotate, full
        self.procs: list[subprocess.Popen[bytes]] = []
        if kind == "simulator":
            self.roots = {"A/": tmp / "simA", "B/": tmp / "simB"}  # rename, copytruncate
            self.sources = {
                "container_globs": [str(tmp / "sim*/*/var/log/pods/*/*/*.log")],
                "audit_globs": [str(tmp / "sim*/*/var/log/kubernetes/audit/audit.log")],
                "file_globs": [str(tmp / "sim*/*/var/log/kubelet.log")],
                "journald": {"enabled": True},
            }
            self.journal = str(tmp / "simA/*/journal/kubelet.json")
        else:
            self.roots = {"": tmp / "logs"}
            self.sources = {
                "container_globs": [str(tmp / "logs/pods/*/*/*.log")],
                "audit_globs": [str(tmp / "logs/audit/audit.log")],
                "file_globs": [],
                "journald": {"enabled": True},
            }
            self.journal = str(tmp / "logs" / "journal.jsonl")

    def start(self) -> None:
        if self.kind == "simulator":
            for root, copytruncate in zip(self.roots.values(), ("0", "1"), strict=True):
                args = [root, "2500", "25", str(self.duration), str(self.rotate), copytruncate, "0"]
                self.procs.append(
                    subprocess.Popen([sys.executable, "-c", SIMULATOR, *map(str, args)], cwd=REPO)
                )
            return
        root = self.roots[""]
        root.mkdir()
        cmd = [sys.executable, str(HERE / "writer.py"), "--root", str(root), "--containers", "50"]
        cmd += ["--rate", "5000", "--duration", str(self.duration), "--rotate-bytes", str(self.rotate)]
        cmd += ["--audit-rotate-bytes", str(self.rotate // 4), "--mode", "mixed"]
        cmd += ["--pad", "300" if self.full else "10"]  # full: ~400-byte lines, every container rotates
        self.procs.append(subprocess.Popen(cmd, cwd=REPO))

    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()

    def tag(self) -> Callable[[str], str]:
        def tag_of(path: str) -> str:
            if path == "journald":
                return next(iter(self.roots))
            for tag, root in self.roots.items():
                if path.startswith(str(root) + os.sep):
                    return tag
            return "?"

        return tag_of

    def expected(self) -> tuple[dict[str, int], dict[str, list[list[int]]], int, int]:
        """(lines per tagged stream, ranges rotation deleted before anyone could read, first id, rotations)"""
        want: dict[str, int] = {}
        gone: dict[str, list[list[int]]] = {}
        if self.kind != "simulator":
            report = json.loads((self.roots[""] / "expected.json").read_text())
            return report["expected"], gone, 1, report["rotations"]
        rotations = 0
        for tag, root in self.roots.items():
            streams = json.loads((root / "manifest.json").read_text())["streams"]
            for name, info in streams.items():
                if info["format"] == "journald" and tag != "A/":
                    continue  # only simA's journal is behind the fake journalctl
                want[tag + name] = info["lines"]
                gone[tag + name] = info["deleted"]
                rotations += max(0, len(info["files"]) - 1) + len(info["deleted"])
        return want, gone, 0, rotations


def run_fault_scenario(tmp: Path, *, full: bool, writer: str = WRITER, seed: int = 4) -> dict[str, object]:
    rng = random.Random(seed)
    duration = 300.0 if full else 40.0
    outage = 30.0 if full else 6.0
    kill_every = (2.0, 10.0) if full else (2.0, 5.0)
    rotate = 5_000_000 if full else 400_000
    workload = Workload(tmp, writer, duration, rotate, full)
    bindir = tmp / "bin"
    bindir.mkdir()
    wrapper = bindir / "journalctl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "fake_journalctl.py"} "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "KT_FAKE_JOURNAL": workload.journal}
    receiver = Receiver(tmp)
    receiver.start()
    agent = AgentProcess(tmp, agent_config(tmp, receiver.url, sources=workload.sources), env)
    workload.start()
    agent.start()
    start = time.monotonic()
    outages = [duration * 0.25, duration * 0.6]
    kills = 0
    next_kill = start + rng.uniform(*kill_every)
    receiver_down_until = 0.0
    code = None
    try:
        while workload.running():
            now = time.monotonic()
            if outages and now - start >= outages[0]:
                outages.pop(0)
                receiver.stop()
                receiver_down_until = now + outage
            if receiver_down_until and now >= receiver_down_until:
                receiver.start()
                receiver_down_until = 0.0
            if now >= next_kill:
                agent.kill9()
                kills += 1
                time.sleep(rng.uniform(0.0, 0.5))
                agent.start()
                next_kill = time.monotonic() + rng.uniform(*kill_every)
            time.sleep(0.05)
        if receiver.proc is None:
            receiver.start()
        want, gone, first, rotations = workload.expected()
        deadline = time.monotonic() + (240 if full else 60)
        result = tally(receiver.out, workload.tag())
        while time.monotonic() < deadline and result.lost(want, first, gone):
            time.sleep(2)
            result = tally(receiver.out, workload.tag())
        code = agent.terminate()
    finally:
        workload.kill()
        if agent.proc is not None:
            agent.kill9()
        receiver.stop()
    result = tally(receiver.out, workload.tag())
    lines = sum(want.values())

    def lost_of(match: Callable[[str], bool]) -> int:
        return result.lost({k: v for k, v in want.items() if match(k)}, first, gone)

    return {
        "writer": writer,
        "lines_written": lines,
        "lines_per_s": round(lines / duration),
        "streams": len(want),
        "rotations": rotations,
        "lines_in_files_the_writer_deleted": sum(b - a for r in gone.values() for a, b in r),
        "of_which_shipped_before_deletion": sum(
            1 for s, r in gone.items() for a, b in r for i in range(a, b) if (s, i) in result.seq
        ),
        "kills": kills,
        "agent_starts": agent.starts,
        "agent_exit_code": code,
        "events_stored_after_dedup": len(result.events),
        "lost": result.lost(want, first, gone),
        "duplicated_after_dedup": result.duplicated(),
        "raw_lines_received": result.raw_lines,
        "raw_resent_lines": result.resent_lines,
        "lost_by_source": {
            "audit": lost_of(lambda k: k.endswith("audit")),
            "journal": lost_of(lambda k: "journal" in k),
            "container_and_node_files": lost_of(lambda k: not k.endswith("audit") and "journal" not in k),
        },
        "duration_secs": duration,
        "outage_secs": outage,
        "rotate_bytes": rotate,
    }


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_no_loss_no_duplicates_through_kill9_outages_and_rotation(tmp_path: Path) -> None:
    report = run_fault_scenario(tmp_path, full=FULL)
    print(json.dumps(report, indent=1))
    if os.environ.get("KT_FAULT_REPORT"):
        Path(os.environ["KT_FAULT_REPORT"]).write_text(json.dumps(report, indent=1))
    assert report["lost"] == 0, (report, (tmp_path / "agent.log").read_text()[-5000:])
    assert report["duplicated_after_dedup"] == 0, report
    assert report["kills"] >= 3
    assert report["rotations"] > 0
    assert report["lost_by_source"] == {"audit": 0, "journal": 0, "container_and_node_files": 0}
    assert report["agent_exit_code"] == 0
