"""Fixtures for the agent tests: a real receiver process, a real agent process, record analysis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrail.simulate.seq import SEQ_RE_BYTES
from tests.agent.receiver import read_records

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SEQ = SEQ_RE_BYTES  # the simulator's sequence-id convention (kubetrail.simulate.seq)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Receiver:
    def __init__(self, tmp: Path, discard: bool = False) -> None:
        self.port = free_port()
        self.out = tmp / "received.bin"
        self.control = tmp / "receiver-control.json"
        self.discard = discard
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, str(HERE / "receiver.py"), "--port", str(self.port), "--out", str(self.out)]
        cmd += ["--control", str(self.control)] + (["--discard"] if self.discard else [])
        self.proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class AgentProcess:
    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **(env or {})}
        self.config_path = tmp / "kubetrail.yaml"
        self.config_path.write_text(yaml.safe_dump({"agent": config}))
        self.log = tmp / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubetrail.agent", "-c", str(self.config_path)],
                stdout=log,
                stderr=log,
                cwd=REPO,
                env=self.env,
            )

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.terminate()
        code = self.proc.wait(timeout)
        self.proc = None
        return code


@dataclass
class Tally:
    """What the receiver stored, deduplicated by event id = (stream key, line offset)."""

    raw_lines: int = 0
    events: dict[tuple[str, int], bytes] = field(default_factory=dict)
    seq: Counter[tuple[str, int]] = field(default_factory=Counter)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def resent_lines(self) -> int:
        return self.raw_lines - len(self.events)

    def lost(
        self, expected: dict[str, int], first: int = 1, gone: dict[str, list[list[int]]] | None = None
    ) -> int:
        """Ids ``first .. first+n-1`` per stream never received (ranges in ``gone`` excused)."""
        missing = 0
        for s, n in expected.items():
            for i in range(first, first + n):
                if (s, i) not in self.seq and not any(a <= i < b for a, b in (gone or {}).get(s, [])):
                    missing += 1
        return missing

    def duplicated(self) -> int:
        return sum(c - 1 for c in self.seq.values() if c > 1)


def tally(path: Path, tag: Callable[[str], str] = lambda path: "") -> Tally:
    """Dedup what the receiver stored by event id; sequence ids are keyed ``<tag(path)><stream>``.

    CRI partial lines (``P``) are joined with what follows on the same output stream before looking for
    ids, as the server's parser does (the simulator splits long lines, sometimes inside the id token).
    """
    out = Tally()
    prefixes: dict[str, str] = {}
    cri: set[str] = set()
    for rec in read_records(path):
        data: bytes = rec["data"]
        pos = 0
        prefixes.setdefault(rec["key"], tag(rec.get("path") or ""))
        if rec.get("source") == "container":
            cri.add(rec["key"])
        for line in data.splitlines(keepends=True):
            out.raw_lines += 1
            event = (rec["key"], rec["offset"] + pos)
            pos += len(line)
            known = out.events.get(event)
            if known is not None:
                if known != line:
                    raise AssertionError(f"event {event} received with different bytes")
                continue
            out.events[event] = line
        if rec.get("path"):
            out.metadata[rec["path"]] = rec.get("meta") or {}
    partial: dict[tuple[str, bytes], bytes] = {}
    for (key, _offset), line in sorted(out.events.items()):
        text = line
        if key in cri:
            parts = line.split(b" ", 3)
            if len(parts) == 4 and parts[2] in (b"P", b"F"):
                slot = (key, parts[1])
                joined = partial.pop(slot, b"") + parts[3].rstrip(b"\n")
                if parts[2] == b"P":
                    partial[slot] = joined
                    continue
                text = joined
        for stream, n in {(m.group(1), m.group(2)) for m in SEQ.finditer(text)}:
            out.seq[(prefixes[key] + stream.decode(), int(n))] += 1
    return out


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path)
    r.start()
    yield r
    r.stop()


def agent_config(tmp: Path, url: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "node_name": "node-a",
        "data_dir": str(tmp / "agent-data"),
        "metrics_listen": None,
        "poll_interval_secs": 0.1,
        "rescan_interval_secs": 1.0,
        "rotate_grace_secs": 1.0,
        "checkpoint_interval_secs": 0.2,
        "server": {"url": url},
        "batch": {"flush_interval_secs": 0.1, "initial_backoff_secs": 0.05, "max_backoff_secs": 1.0},
        "sources": {
            "container_globs": [str(tmp / "pods/*/*/*.log")],
            "audit_globs": [str(tmp / "audit/audit.log")],
            "file_globs": [],
            "journald": {"enabled": False},
        },
        "kubernetes": {"enabled": "false"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg
