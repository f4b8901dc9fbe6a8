"""Parse throughput of the node and audit formats (klog, syslog, journald, audit). One JSON object.

    python benchmarks/parse_node_audit.py            # full: 1M audit events, 2M lines of the others
    python benchmarks/parse_node_audit.py --quick    # 100k audit events, 300k lines of the others

Corpora are written to a temporary file with a fixed seed and read back in 1 MiB chunks cut at the
last newline, as the agent ships them (reading is inside the measurement). CPU seconds are the
process's (DuckDB's threads included); peak RSS is the process's own peak over all cases.
Targets (issue #3, node/audit half): audit >= 100k events per CPU-second, klog / syslog / journald
>= 300k lines per CPU-second.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.formats.audit import AuditParser
from kubetrail.formats.base import Parser
from kubetrail.formats.journald import JournaldParser
from kubetrail.formats.klog import KlogParser
from kubetrail.formats.syslog import SyslogParser

CHUNK_BYTES = 1 << 20
NOW = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)
TARGETS = {"audit": 100_000, "klog": 300_000, "syslog": 300_000, "journald": 300_000}
_USERS = ["system:serviceaccount:kube-system:coredns", "system:node:ip-10-0-1-23", "alice@example.com"]
_RESOURCES = ["pods", "configmaps", "leases", "endpointslices", "secrets", "deployments", "nodes"]
_VERBS = ["get", "list", "watch", "update", "patch", "create"]


def _audit_line(rng: random.Random, i: int) -> bytes:
    """A mix like a real cluster's: mostly Metadata-level reads, a third Request-level writes."""
    stamp = (NOW - timedelta(seconds=rng.random() * 3600)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    verb = rng.choice(_VERBS)
    event: dict[str, object] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"{i:08x}-3b7d-4e7a-9c1e-0a1b2c3d4e5f",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/default/{rng.choice(_RESOURCES)}?limit=500",
        "verb": verb,
        "user": {"username": rng.choice(_USERS), "groups": ["system:authenticated"]},
        "sourceIPs": [f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"],
        "userAgent": "kubelet/v1.30.0 (linux/amd64) kubernetes/7c48c2b",
        "objectRef": {
            "resource": rng.choice(_RESOURCES),
            "namespace": "default",
            "name": f"obj-{i % 977}",
            "apiVersion": "v1",
        },
        "responseStatus": {"metadata": {}, "code": rng.choice([200, 200, 200, 201, 403, 404])},
        "requestReceivedTimestamp": stamp,
        "stageTimestamp": stamp,
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"},
    }
    if verb in ("create", "update", "patch"):
        event["level"] = "Request"
        event["requestObject"] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": f"web-{i}", "labels": {"app": "web", "tier": "frontend"}},
            "spec": {
                "containers": [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]
            },
        }
    return orjson.dumps(event)


def _klog_line(rng: random.Random, i: int) -> bytes:
    sev = rng.choice("IIIIWE")
    head = f"{sev}0506 11:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}    2211 "
    if i % 2:
        return (
            head + f'kubelet.go:{rng.randrange(3000)}] "SyncLoop (PLEG): event for pod" '
            f'pod="kube-system/coredns-{i % 97}" event={{"ID":"{i:x}","Type":"ContainerStarted"}}'
        ).encode()
    return (
        head + f"reflector.go:{rng.randrange(500)}] Watch close - *v1.Pod total {i % 83} items received"
    ).encode()


def _syslog_line(rng: random.Random, i: int) -> bytes:
    if i % 4 == 0:
        return (
            f"<165>1 2026-05-06T11:{rng.randrange(60):02d}:00.{i % 1000:03d}Z node-1 containerd 811 - "
            f'[meta@32473 unit="containerd.service" seq="{i}"] starting container {i:x}'
        ).encode()
    return (
        f"May  6 11:{rng.randrange(60):02d}:{rng.randrange(60):02d} node-1 sshd[{900 + i % 50}]: "
        f"Accepted publickey for ec2-user from 10.0.{i % 256}.{rng.randrange(256)} port 5{i % 1000}".encode()
    )


def _journald_line(rng: random.Random, i: int) -> bytes:
    entry = {
        "__CURSOR": f"s=739ad463348b4ceca5a9e69c95a3c93f;i={i:x};b=6c7c6013a8b34d5a8d6c7a0f8e1f2a3b;m=29",
        "__REALTIME_TIMESTAMP": str(1778065200000000 + i * 1000),
        "__MONOTONIC_TIMESTAMP": str(11169568196 + i),
        "_BOOT_ID": "6c7c6013a8b34d5a8d6c7a0f8e1f2a3b",
        "PRIORITY": rng.choice(["6", "6", "6", "4", "3"]),
        "SYSLOG_FACILITY": "3",
        "_UID": "0",
        "_GID": "0",
        "_HOSTNAME": "ip-10-0-1-23",
        "SYSLOG_IDENTIFIER": "containerd",
        "_PID": "811",
        "_COMM": "containerd",
        "_EXE": "/usr/bin/containerd",
        "_CMDLINE": "/usr/bin/containerd",
        "_SYSTEMD_CGROUP": "/system.slice/containerd.service",
        "_SYSTEMD_UNIT": "containerd.service",
        "_TRANSPORT": "stdout",
        "MESSAGE": f'time="2026-05-06T11:00:00Z" level=info msg="StartContainer for {i:x} returns"',
    }
    return orjson.dumps(entry)


def _corpus(make: Callable[[random.Random, int], bytes], n: int, directory: Path) -> Path:
    """Write ``n`` lines to a file (streamed: the corpus is never whole in memory)."""
    rng = random.Random(7)
    path = directory / f"{make.__name__}.log"
    with path.open("wb") as out:
        for i in range(n):
            out.write(make(rng, i) + b"\n")
    return path


def _chunks(path: Path) -> Iterator[tuple[int, bytes]]:
    """1 MiB reads cut at the last newline, like the agent's tailer."""
    offset = 0
    carry = b""
    with path.open("rb") as source:
        while block := source.read(CHUNK_BYTES):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            yield offset, data[:cut]
            offset += cut
            carry = data[cut:]
    if carry:
        yield offset, carry


def _measure(name: str, parser: Parser, path: Path, source: str) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    rows = errors = 0
    size = path.stat().st_size
    for offset, piece in _chunks(path):
        origin = Origin(
            node="node-1",
            source=source,
            path=f"/var/log/{name}.log",
            file=FileIdentity(1, 2, "fp"),
            offset=offset,
        )
        batch = parser.parse(Chunk(origin, piece), NOW)
        rows += batch.num_rows
        errors += batch.num_rows - batch.column("event.parse_error").null_count
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    unit = "events" if name == "audit" else "lines"
    return {
        f"{name}_{unit}": rows,
        f"{name}_parse_errors": errors,
        f"{name}_bytes_per_line": round(size / max(rows, 1), 1),
        f"{name}_{unit}_per_s": round(rows / wall),
        f"{name}_{unit}_per_cpu_s": round(rows / cpu),
        f"{name}_mb_per_s": round(size / wall / 1e6, 1),
        f"{name}_target_{unit}_per_cpu_s": TARGETS[name],
    }


def bench_audit(n: int, directory: Path) -> dict[str, float]:
    return _measure("audit", AuditParser(), _corpus(_audit_line, n, directory), "audit")


def bench_klog(n: int, directory: Path) -> dict[str, float]:
    return _measure("klog", KlogParser(), _corpus(_klog_line, n, directory), "klog")


def bench_syslog(n: int, directory: Path) -> dict[str, float]:
    return _measure("syslog", SyslogParser(), _corpus(_syslog_line, n, directory), "syslog")


def bench_journald(n: int, directory: Path) -> dict[str, float]:
    return _measure("journald", JournaldParser(), _corpus(_journald_line, n, directory), "journald")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small corpora (< 50 s on 2 cores)")
    parser.add_argument("--only", default="", help="comma-separated subset: audit,klog,syslog,journald")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    audit_n, lines_n = (100_000, 300_000) if args.quick else (1_000_000, 2_000_000)
    result: dict[str, float | str] = {"mode": "quick" if args.quick else "full"}
    with tempfile.TemporaryDirectory(prefix="kubetrail-bench-") as tmp:
        directory = Path(tmp)
        if not only or "audit" in only:
            result.update(bench_audit(audit_n, directory))
        for name, bench in (("klog", bench_klog), ("syslog", bench_syslog), ("journald", bench_journald)):
            if not only or name in only:
                result.update(bench(lines_n, directory))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
