"""Agent benchmark: ship the simulator's CRI corpus to a receiver that discards, measure the agent.

    python benchmarks/agent.py [--quick] [--compression zstd,lz4,none]

Prints one JSON object. Per compression: MB/s (wall time from agent start until the receiver has
every byte; ``mb_per_s_after_startup`` from the first acknowledged batch), agent CPU-seconds per GB
shipped (user + system of the agent process only; ``cpu_s_per_gb`` includes interpreter start-up and
imports, ``cpu_s_per_gb_after_startup`` counts from the first acknowledged batch), and the agent's peak
RSS (VmHWM). The agent is pinned to one core, the receiver (another process, decoding with the
project's ``agent_protocol.decode_request`` and discarding) to the other, so it is not counted.
The corpus (simulator batch mode, ~1 GB; ~200 MB with --quick) is cached under $TMPDIR.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

CACHE = Path(tempfile.gettempdir()) / "kubetrail-bench-agent"


def corpus(target_mb: int) -> tuple[Path, list[str], int]:
    """Simulated cluster logs of about ``target_mb`` MB of container log files (cached)."""
    root = CACHE / f"corpus-v2-{target_mb}mb"
    pattern = str(root / "*/var/log/pods/*/*/*.log")
    if not (root / "done").exists():
        from kubetrail.simulate import SimulationOptions, simulate_batch

        shutil.rmtree(root, ignore_errors=True)
        hours = target_mb / 3560  # ~1 MB of container logs per 3.6 simulated seconds at these rates
        # rotation far above the corpus size: every byte stays in plain files the agent ships
        options = SimulationOptions(
            nodes=2, hours=hours, lines_per_node_s=2000, attacks=False, rotate_bytes=1 << 34
        )
        simulate_batch(root, options)
        (root / "done").write_text("ok")
    files = [p for g in (pattern, pattern + ".*") for p in glob.glob(g) if not p.endswith(".gz")]
    return root, [pattern], sum(os.path.getsize(p) for p in files)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_receiver(port: int) -> None:
    """The discarding receiver (its own process)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from kubetrail.receivers.agent_protocol import PATH, decode_request

    stats = {"bytes": 0, "chunks": 0, "requests": 0}

    async def chunks(request: Request) -> JSONResponse:
        req = decode_request(await request.body(), request.headers.get("content-encoding", "identity"))
        stats["bytes"] += req.data_bytes
        stats["chunks"] += len(req.chunks)
        stats["requests"] += 1
        return JSONResponse({"accepted_chunks": len(req.chunks)})

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse(stats)

    app = Starlette(routes=[Route(PATH, chunks, methods=["POST"]), Route("/stats", get_stats)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        return dict(json.loads(resp.read()))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _runqueue_wait_s(pid: int) -> float:
    """Time the agent's threads were runnable but waiting for a CPU (other processes had it)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ship(patterns: list[str], total: int, compression: str, work: Path) -> dict[str, float]:
    port = free_port()
    cores = sorted(os.sched_getaffinity(0))
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    if len(cores) > 1:
        os.sched_setaffinity(receiver.pid, {cores[-1]})
    deadline = time.monotonic() + 20
    while True:
        try:
            _stats(port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    data_dir = work / f"agent-{compression}"
    shutil.rmtree(data_dir, ignore_errors=True)
    config = {
        "agent": {
            "node_name": "bench",
            "data_dir": str(data_dir),
            "metrics_listen": None,
            "log_level": "warning",
            "server": {"url": f"http://127.0.0.1:{port}"},
            "batch": {"compression": compression},
            "sources": {
                "container_globs": patterns,
                "audit_globs": [],
                "file_globs": [],
                "journald": {"enabled": False},
            },
            "kubernetes": {"enabled": "false"},
        }
    }
    cfg_path = work / f"agent-{compression}.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    agent = subprocess.Popen([sys.executable, "-m", "kubetrail.agent", "-c", str(cfg_path)])
    os.sched_setaffinity(agent.pid, {cores[0]})
    try:
        got = 0
        first: tuple[float, int, float] | None = None  # (cpu, bytes, time) at the first acknowledged batch
        while got < total:
            time.sleep(0.02)
            got = _stats(port)["bytes"]
            if first is None and got > 0:
                first = (_cpu_seconds(agent.pid), got, time.monotonic())
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited with {agent.returncode}")
            if time.monotonic() - started > 900:
                raise TimeoutError(f"shipped {got} of {total} bytes")
        finished = time.monotonic()
        wall = finished - started
        cpu = _cpu_seconds(agent.pid)
        receiver_cpu = _cpu_seconds(receiver.pid)
        waited = _runqueue_wait_s(agent.pid)
        assert first is not None
        steady_cpu, steady_bytes = cpu - first[0], total - first[1]
        rss = _peak_rss_mb(agent.pid)
    finally:
        agent.terminate()
        agent.wait(30)
        receiver.terminate()
        receiver.wait(10)
    gb = total / 1e9
    return {
        "mb_per_s": round(total / 1e6 / wall, 1),
        "mb_per_s_after_startup": round(steady_bytes / 1e6 / (finished - first[2]), 1),
        "cpu_s_per_gb": round(cpu / gb, 3),
        "cpu_s_per_gb_after_startup": round(steady_cpu / (steady_bytes / 1e9), 3),
        "startup_cpu_s": round(first[0], 3),
        "peak_rss_mb": round(rss, 1),
        "wall_s": round(wall, 2),
        "agent_core_busy_share": round(cpu / wall, 2),
        "receiver_core_busy_share": round(receiver_cpu / wall, 2),
        "agent_runqueue_wait_share": round(waited / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="~200 MB corpus instead of ~1 GB")
    parser.add_argument("--compression", default="zstd,none", help="comma-separated: zstd, lz4, none")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
        return
    target = 200 if args.quick else 1000
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _root, patterns, total = corpus(target)
    corpus_s = time.monotonic() - t0
    out: dict[str, object] = {
        "corpus_bytes": total,
        "corpus_build_s": round(corpus_s, 1),
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for compression in args.compression.split(","):
            for key, value in ship(patterns, total, compression, Path(tmp)).items():
                out[f"{compression}_{key}"] = value
    print(json.dumps(out))


if __name__ == "__main__":
    main()
