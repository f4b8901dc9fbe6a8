"""Kill -9 the real ``kubetrail server`` under load from concurrent agents; count lost and doubled events.

Used by ``tests/server/test_crash.py`` (short) and ``benchmarks/crash.py`` (long). Each client plays
an agent tailing its own file: it sends CRI lines in chunks with file origins and, like the agent,
resends a chunk until it is acknowledged. Acknowledged lines must be in the store exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.receivers.agent_protocol import PATH, encode_request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CrashResult:
    acked: int
    stored: int
    lost: int
    duplicated: int
    kills: int
    resends: int
    seconds: float
    extra: dict[str, int] = field(default_factory=dict)


class ServerProcess:
    def __init__(self, workdir: Path, api_port: int, agent_port: int) -> None:
        self.workdir = workdir
        self.config = workdir / "kubetrail.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(workdir / "data"),
                    "server": {
                        "listen": f"127.0.0.1:{api_port}",
                        "store_flush_interval_secs": 0.5,
                        "wal": {"segment_bytes": 256 * 1024},
                    },
                    "receivers": {"agent": {"type": "agent", "listen": f"127.0.0.1:{agent_port}"}},
                }
            )
        )
        self.api = f"http://127.0.0.1:{api_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(workdir / "server.log", "ab")  # noqa: SIM115 - lives as long as the harness

    def start(self) -> None:
        cmd = [sys.executable, "-m", "kubetrail", "server", "-c", str(self.config), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.workdir / 'server.log'}"
                )
            try:
                if httpx.get(self.api + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not become ready")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        self.log.close()
        return rc


class AgentClient(threading.Thread):
    """One simulated agent: sequential chunks of CRI lines from one file, resent until acked."""

    def __init__(self, index: int, url: str, stop: threading.Event, lines_per_chunk: int = 50) -> None:
        super().__init__(daemon=True)
        self.index = index
        self.url = url
        self.stop_event = stop
        self.lines_per_chunk = lines_per_chunk
        self.acked: list[str] = []
        self.resends = 0

    def _chunk(self, seq: int, offset: int) -> tuple[Chunk, list[str]]:
        messages = [f"c{self.index}-{seq}-{i}" for i in range(self.lines_per_chunk)]
        data = "".join(
            f"2026-11-27T05:00:00.{seq % 1000:03d}000000Z stdout F {m}\n" for m in messages
        ).encode()
        origin = Origin(
            node=f"node-{self.index}",
            source="container",
            path=f"/var/log/pods/crash_pod-{self.index}_uid{self.index}/app/0.log",
            file=FileIdentity(1, 1000 + self.index, "fp"),
            offset=offset,
        )
        return Chunk(origin, data), messages

    def run(self) -> None:
        offset = 0
        seq = 0
        with httpx.Client(timeout=10) as client:
            while not self.stop_event.is_set():
                chunk, messages = self._chunk(seq, offset)
                body, headers = encode_request(f"node-{self.index}", [chunk], batch_id=f"a{self.index}:{seq}")
                while True:
                    try:
                        r = client.post(self.url, content=body, headers=headers)
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    self.resends += 1
                    if self.stop_event.wait(0.05):
                        return  # never acknowledged: not counted
                self.acked.extend(messages)
                offset += len(chunk.data)
                seq += 1


def run_crash_test(
    workdir: Path, kills: int, clients: int = 4, min_up: float = 1.0, max_up: float = 2.5
) -> CrashResult:
    started = time.monotonic()
    api_port, agent_port = free_port(), free_port()
    server = ServerProcess(workdir, api_port, agent_port)
    server.start()
    stop = threading.Event()
    url = f"http://127.0.0.1:{agent_port}{PATH}"
    agents = [AgentClient(i, url, stop) for i in range(clients)]
    for a in agents:
        a.start()
    rng = random.Random(5)
    for _ in range(kills):
        time.sleep(rng.uniform(min_up, max_up))
        server.kill9()
        server.start()
    time.sleep(rng.uniform(min_up, max_up))
    stop.set()
    for a in agents:
        a.join(30)
    rc = server.stop()
    if rc != 0:
        raise RuntimeError(f"graceful stop exited {rc}")
    from kubetrail.store import Store, StoreConfig
    from kubetrail.store.config import QueryLimits

    store = Store(workdir / "data" / "store", StoreConfig(limits=QueryLimits(max_rows=100_000_000)))
    try:
        table = store.sql("SELECT message, count(*) AS n FROM logs GROUP BY message")
        total = store.sql("SELECT count(*) AS n FROM logs").column("n")[0].as_py()
    finally:
        store.close()
    counts = dict(zip(table.column("message").to_pylist(), table.column("n").to_pylist(), strict=True))
    if sum(counts.values()) != total:
        raise RuntimeError(f"query result truncated: {sum(counts.values())} of {total} rows")
    acked = [m for a in agents for m in a.acked]
    lost = sum(1 for m in acked if m not in counts)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    return CrashResult(
        acked=len(acked),
        stored=sum(counts.values()),
        lost=lost,
        duplicated=duplicated,
        kills=kills,
        resends=sum(a.resends for a in agents),
        seconds=round(time.monotonic() - started, 1),
    )


if __name__ == "__main__":  # pragma: no cover - manual runs
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(run_crash_test(Path(d), int(os.environ.get("KILLS", "3"))))
