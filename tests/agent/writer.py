"""A live log writer with real kubelet / kube-apiserver / journald layouts and rotation (test helper).

Stands in until ``kubetrail simulate --live`` is available; it follows the same conventions:

* containers: ``<root>/pods/<ns>_<pod>_<uid>/<container>/0.log`` in CRI format; rotation every
  ``--rotate-bytes`` either by rename (kubelet: ``0.log`` -> ``0.log.<YYYYMMDD-HHMMSS>``, then older rotated
  files gzip'd, only the newest kept uncompressed) or by copytruncate (copy, then truncate in place);
* audit: ``<root>/audit/audit.log`` JSON lines, rotated by rename to ``audit-<YYYY-MM-DDTHH-MM-SS.mmm>.log``;
* journal: ``<root>/journal.jsonl``, ``journalctl -o json`` lines with ``__CURSOR`` (read by the fake
  journalctl);
* every line carries ``kt_seq=<stream>:<n>``; ``<root>/expected.json`` gets the final counts.

    python tests/agent/writer.py --root DIR --containers 50 --rate 5000 --duration 60 --rotate-bytes 5000000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import time
from pathlib import Path


class Stream:
    def __init__(self, name: str, path: Path, mode: str, kind: str, pad: int = 0) -> None:
        self.name, self.path, self.mode, self.kind = name, path, mode, kind
        self.pad = "p" * pad
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = 0
        self.n = 0
        self.rotations = 0

    def line(self, now: float) -> bytes:
        self.n += 1
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e9) % 10**9:09d}Z"
        seq = f"kt_seq={self.name}:{self.n}"
        if self.kind == "audit":
            doc = {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": "Metadata",
                "auditID": seq,
                "stage": "ResponseComplete",
                "verb": "get",
                "requestURI": "/api/v1/pods",
                "stageTimestamp": ts,
            }
            return json.dumps(doc).encode() + b"\n"
        return f"{ts} stdout F {seq} GET /healthz 200 user-agent=kube-probe/1.30 pad-{self.pad}\n".encode()

    def write(self, data: bytes, rotate_bytes: int) -> None:
        os.write(self.fd, data)
        self.size += len(data)
        if self.size >= rotate_bytes:
            self.rotate()

    def rotate(self) -> None:
        self.rotations += 1
        now = time.time()
        if self.kind == "audit":
            stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
            target = self.path.with_name(f"audit-{stamp}.log")
        else:
            target = self.path.with_name(
                f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"
            )
            while target.exists() or Path(str(target) + ".gz").exists():
                now += 1
                target = self.path.with_name(
                    f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"
                )
        if self.mode == "copytruncate":
            shutil.copyfile(self.path, target)
            os.truncate(self.path, 0)
        else:
            os.rename(self.path, target)
            os.close(self.fd)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = 0
        if self.kind == "container":
            self.compress_older(target)

    def compress_older(self, newest: Path) -> None:
        """kubelet keeps the newest rotated file plain and gzips the rest (max 5 files)."""
        rotated = sorted(p for p in self.path.parent.glob(self.path.name + ".*") if p.suffix != ".gz")
        for old in rotated:
            if old != newest:
                with old.open("rb") as src, gzip.open(str(old) + ".gz", "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst)
                old.unlink()
        gz = sorted(self.path.parent.glob(self.path.name + ".*.gz"))
        for old in gz[:-3]:
            old.unlink()


class Journal:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.n = 0

    def write(self, count: int, now: float) -> None:
        out = []
        for _ in range(count):
            self.n += 1
            doc = {
                "__CURSOR": f"s=fake;i={self.n:x}",
                "__REALTIME_TIMESTAMP": str(int(now * 1e6)),
                "_HOSTNAME": "node-a",
                "SYSLOG_IDENTIFIER": "kubelet",
                "PRIORITY": "6",
                "MESSAGE": f"kt_seq=journal:{self.n} Started container",
            }
            out.append(json.dumps(doc).encode() + b"\n")
        os.write(self.fd, b"".join(out))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--containers", type=int, default=50)
    p.add_argument("--rate", type=float, default=5000, help="container lines per second (all containers)")
    p.add_argument("--audit-rate", type=float, default=200)
    p.add_argument("--journal-rate", type=float, default=100)
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--rotate-bytes", type=int, default=5_000_000)
    p.add_argument("--audit-rotate-bytes", type=int, default=0)
    p.add_argument("--pad", type=int, default=10, help="extra bytes per container line")
    p.add_argument("--mode", choices=["rename", "copytruncate", "mixed"], default="mixed")
    args = p.parse_args()
    root = args.root
    streams = []
    for i in range(args.containers):
        mode = args.mode if args.mode != "mixed" else ("rename" if i % 2 == 0 else "copytruncate")
        path = root / "pods" / f"ns{i % 5}_pod-{i}_uid-{i:04d}" / "app" / "0.log"
        streams.append(Stream(f"c{i}", path, mode, "container", args.pad))
    audit = Stream("audit", root / "audit" / "audit.log", "rename", "audit") if args.audit_rate else None
    journal = Journal(root / "journal.jsonl") if args.journal_rate else None
    start = time.monotonic()
    tick = 0.01
    done = {"c": 0, "a": 0, "j": 0}
    rr = 0
    while (elapsed := time.monotonic() - start) < args.duration:
        # owed lines follow the wall clock, so a writer delayed by a busy machine catches up in bursts
        now = time.time()
        due_c = int(args.rate * elapsed) - done["c"]
        due_a = int(args.audit_rate * elapsed) - done["a"]
        due_j = int(args.journal_rate * elapsed) - done["j"]
        batch: dict[int, list[bytes]] = {}
        for _ in range(max(0, due_c)):
            idx = rr % len(streams)
            rr += 1
            batch.setdefault(idx, []).append(streams[idx].line(now))
        done["c"] += max(0, due_c)
        for idx, lines in batch.items():
            streams[idx].write(b"".join(lines), args.rotate_bytes)
        if audit is not None and due_a > 0:
            audit.write(
                b"".join(audit.line(now) for _ in range(due_a)), args.audit_rotate_bytes or args.rotate_bytes
            )
            done["a"] += due_a
        if journal is not None and due_j > 0:
            journal.write(due_j, now)
            done["j"] += due_j
        time.sleep(tick)
    expected = {s.name: s.n for s in streams}
    if audit is not None:
        expected["audit"] = audit.n
    if journal is not None:
        expected["journal"] = journal.n
    rotations = sum(s.rotations for s in streams) + (audit.rotations if audit else 0)
    (root / "expected.json").write_text(json.dumps({"expected": expected, "rotations": rotations}))


if __name__ == "__main__":
    main()
