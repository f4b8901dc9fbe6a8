"""Acceptance: no loss and no duplicates through kill -9, server outages and rotation (real processes).

A writer process produces container logs (50 containers, kubelet rename rotation and copytruncate, gzip
of older rotated files), an audit log (kube-apiserver rename rotation) and a journal (read through a fake
``journalctl`` on PATH — it stands in for journald because this container has no systemd). The agent
is kill -9'ed at random intervals and restarted; the receiver (a real HTTP server process that fsyncs
before acknowledging) is stopped twice. Afterwards every ``kt_seq`` id must be stored exactly once after
dedup by event id (stream identity + byte offset): lost = 0, duplicated = 0. Raw re-sends are reported.

CI runs a short version (40 s, 400 kB rotation, two 6 s outages, kills every 2-5 s); the full acceptance
run (>= 5k lines/s of ~400 bytes for 300 s, 5 MB rotation, two 30 s outages, kills every 2-10 s) is
``KT_FAULT_FULL=1 KT_FAULT_REPORT=report.json pytest tests/agent/test_fault.py -s``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent.conftest import HERE, REPO, AgentProcess, Receiver, agent_config, tally

FULL = os.environ.get("KT_FAULT_FULL") == "1"


def run_fault_scenario(tmp: Path, *, full: bool, seed: int = 4) -> dict[str, object]:
    rng = random.Random(seed)
    duration = 300.0 if full else 40.0
    pad = 300 if full else 10  # full: ~400-byte lines, 2 MB/s, so every container rotates at 5 MB
    outage = 30.0 if full else 6.0
    kill_every = (2.0, 10.0) if full else (2.0, 5.0)
    rotate = 5_000_000 if full else 400_000
    bindir = tmp / "bin"
    bindir.mkdir()
    wrapper = bindir / "journalctl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "fake_journalctl.py"} "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "KT_FAKE_JOURNAL": str(tmp / "logs" / "journal.jsonl")}
    receiver = Receiver(tmp)
    receiver.start()
    cfg = agent_config(
        tmp,
        receiver.url,
        sources={
            "container_globs": [str(tmp / "logs/pods/*/*/*.log")],
            "audit_globs": [str(tmp / "logs/audit/audit.log")],
            "file_globs": [],
            "journald": {"enabled": True},
        },
    )
    agent = AgentProcess(tmp, cfg, env)
    (tmp / "logs").mkdir()
    writer_cmd = [sys.executable, str(HERE / "writer.py"), "--root", str(tmp / "logs"), "--containers", "50"]
    writer_cmd += ["--rate", "5000", "--duration", str(duration), "--rotate-bytes", str(rotate)]
    writer_cmd += ["--audit-rotate-bytes", str(rotate // 4), "--mode", "mixed", "--pad", str(pad)]
    writer = subprocess.Popen(writer_cmd, cwd=REPO)
    agent.start()
    start = time.monotonic()
    outages = [duration * 0.25, duration * 0.6]
    kills = 0
    next_kill = start + rng.uniform(*kill_every)
    receiver_down_until = 0.0
    try:
        while writer.poll() is None:
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
        expected = json.loads((tmp / "logs" / "expected.json").read_text())
        want = expected["expected"]
        deadline = time.monotonic() + (240 if full else 60)
        result = tally(receiver.out)
        while time.monotonic() < deadline and result.lost(want):
            time.sleep(2)
            result = tally(receiver.out)
        code = agent.terminate()
    finally:
        if writer.poll() is None:
            writer.kill()
        if agent.proc is not None:
            agent.kill9()
        receiver.stop()
    result = tally(receiver.out)
    lines = sum(want.values())
    return {
        "lines_written": lines,
        "streams": len(want),
        "rotations": expected["rotations"],
        "kills": kills,
        "agent_starts": agent.starts,
        "agent_exit_code": code,
        "events_stored_after_dedup": len(result.events),
        "lost": result.lost(want),
        "duplicated_after_dedup": result.duplicated(),
        "raw_lines_received": result.raw_lines,
        "raw_resent_lines": result.resent_lines,
        "lost_by_source": {
            name: result.lost(
                {k: v for k, v in want.items() if (k == name or (name == "container" and k[0] == "c"))}
            )
            for name in ("container", "audit", "journal")
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
    assert report["lost_by_source"] == {"container": 0, "audit": 0, "journal": 0}
    assert report["agent_exit_code"] == 0
