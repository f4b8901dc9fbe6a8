"""End to end with the real server: agent -> ``kubetrail server`` (WAL, parsing, store with dedup).

Container logs with rename and copytruncate rotation plus an audit log; the agent is kill -9'ed, and the
server itself is kill -9'ed once (it must replay its WAL: acknowledged means durable). At the end the
store holds every sequence id exactly once.

The writer (``writer.py``) writes and rotates in one thread: its copytruncate copies and truncates with
no write in between, so it never loses a line itself (a real copytruncate rotator racing a writing
process does; see docs/agent.md). Every missing id is therefore the pipeline's loss; the assertion says
which file on disk holds it. The end waits until the agent reports everything acknowledged (not a fixed
sleep: under load the restarted server and agent can take tens of seconds to catch up).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.agent.conftest import HERE, REPO, AgentProcess, agent_config, free_port, wait_port

SERVER = """
import asyncio, logging, sys
logging.basicConfig(level=logging.INFO)
from kubetrail.config import load_config
from kubetrail.server.app import run_server
cfg, topology = load_config(sys.argv[1])
asyncio.run(run_server(cfg, topology))
"""


def start_server(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-c", SERVER, str(cfg)], stdout=fh, stderr=fh, cwd=REPO)


def agent_metrics(port: int) -> dict[str, float]:
    """``{metric: sum over label sets}`` from the agent's /metrics (empty while it is not listening)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.split("{", 1)[0]] = out.get(name.split("{", 1)[0], 0.0) + float(value)
    return out


def wait_drained(port: int, timeout: float = 150.0, quiet: float = 3.0) -> None:
    """Until nothing is unacknowledged (lag, in flight, rotated files) for ``quiet`` seconds in a row."""
    deadline = time.monotonic() + timeout
    since: float | None = None
    while time.monotonic() < deadline:
        m = agent_metrics(port)
        keys = (
            "kubetrail_agent_inflight_bytes",
            "kubetrail_agent_file_lag_bytes",
            "kubetrail_agent_bytes_at_risk",
        )
        # not server_up: a restarted agent with nothing new to read sends no request at all
        drained = bool(m) and all(m.get(k, 0.0) == 0 for k in keys)
        if not drained:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.3)
    raise AssertionError(f"agent not drained within {timeout} s: {agent_metrics(port)}")


def where(root: Path, ids: list[str]) -> dict[str, str]:
    """Which file on disk (plain or .gz) holds each id: tells agent loss at rotations apart."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == "expected.json":
            continue
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for sid in ids:
            if sid not in out and f"kt_seq={sid} ".encode() in data:
                out[sid] = str(path.relative_to(root))
    return out


def stored_seq(data_dir: Path) -> Counter[str]:
    code = (
        "import sys, json; from kubetrail.store.core import Store\n"
        "s = Store(sys.argv[1])\n"
        "t = s.sql('SELECT concat_ws(\\' \\', message, \"kubernetes.audit.auditID\") FROM logs'); s.close()\n"
        "print(json.dumps([m for m in t.column(0).to_pylist() if m]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_dir / "store")], capture_output=True, check=True, cwd=REPO
    )
    seq = re.compile(r"kt_seq=([\w.-]+:\d+)")
    counts: Counter[str] = Counter()
    for message in json.loads(out.stdout):
        for match in set(seq.findall(message)):
            counts[match] += 1
    return counts


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_agent_to_real_server_exactly_once(tmp_path: Path) -> None:
    pytest.importorskip("kubetrail.store.core")
    agent_port, api_port = free_port(), free_port()
    server_cfg = tmp_path / "server.yaml"
    server_cfg.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "server-data"),
                "server": {"listen": f"127.0.0.1:{api_port}"},
                "receivers": {"agent": {"type": "agent", "listen": f"127.0.0.1:{agent_port}"}},
            }
        )
    )
    server_log = tmp_path / "server.log"
    server = start_server(server_cfg, server_log)
    wait_port(agent_port, 60)
    logs = tmp_path / "logs"
    logs.mkdir()
    metrics_port = free_port()
    cfg = agent_config(
        tmp_path,
        f"http://127.0.0.1:{agent_port}",
        metrics_listen=f"127.0.0.1:{metrics_port}",
        sources={
            "container_globs": [str(logs / "pods/*/*/*.log")],
            "audit_globs": [str(logs / "audit/audit.log")],
            "file_globs": [],
            "journald": {"enabled": False},
        },
    )
    agent = AgentProcess(tmp_path, cfg)
    writer_cmd = [sys.executable, str(HERE / "writer.py"), "--root", str(logs), "--containers", "6"]
    writer_cmd += ["--rate", "1500", "--duration", "10", "--rotate-bytes", "100000", "--journal-rate", "0"]
    writer = subprocess.Popen([*writer_cmd, "--mode", "mixed"], cwd=REPO)
    agent.start()
    try:
        for step in range(6):
            time.sleep(2.0)
            if step in (1, 3):
                agent.kill9()
                agent.start()
            if step == 2:
                server.send_signal(signal.SIGKILL)  # acknowledged batches must survive in the WAL
                server.wait()
                server = start_server(server_cfg, server_log)
                wait_port(agent_port, 60)
        writer.wait(60)
        want = json.loads((logs / "expected.json").read_text())["expected"]
        total = sum(want.values())
        wait_drained(metrics_port)
        assert agent.terminate() == 0
        server.send_signal(signal.SIGTERM)
        server.wait(180)
        counts = stored_seq(tmp_path / "server-data")
    finally:
        for proc in (writer, server):
            if proc.poll() is None:
                proc.kill()
        if agent.proc is not None:
            agent.kill9()
    expected = {f"{s}:{n}" for s, count in want.items() for n in range(1, count + 1)}
    lost = expected - set(counts)
    duplicated = {k: v for k, v in counts.items() if v > 1}
    first_lost = sorted(lost, key=lambda k: (k.split(":")[0], int(k.split(":")[1])))[:10]
    assert not lost, (len(lost), where(logs, first_lost), server_log.read_text()[-3000:])
    assert not duplicated, (len(duplicated), list(duplicated.items())[:10])
    assert len(expected) == total
    os.environ.get("KT_E2E_REPORT") and Path(os.environ["KT_E2E_REPORT"]).write_text(
        json.dumps({"lines": total, "stored": sum(counts.values())})
    )
