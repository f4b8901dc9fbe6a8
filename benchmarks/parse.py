"""Parse throughput per format: lines/s, MB/s, lines per CPU-second, peak RSS. Prints one JSON object.

    python benchmarks/parse.py            # full: a 1 GB CRI file, 256 MB of each other corpus
    python benchmarks/parse.py --quick    # ~100 MB CRI, ~40 MB of each other corpus (< 50 s)

Each case runs in its own subprocess so ``peak_rss_mb`` is that case's own peak. Files are generated
into a temporary directory (deleted afterwards) and read in 1 MiB chunks cut at the last newline, as
the agent ships them, so reading is inside the measurement like Fluent Bit's ``tail``.

Cases:
* ``cri`` — ``CriParser`` alone: CRI decoding, P/F reassembly (0.2 % of lines split), path metadata.
* ``docker`` — ``DockerParser`` alone on docker json-file lines (same split share).
* ``payload_mix`` — the server's ``Parsing`` stage on CRI lines whose messages are a mix of JSON,
  logfmt, access-log, plain text and stack traces: reassembly + stack joining + payload extraction.
* ``simulator_mix`` — ``Parsing`` on the container log files ``kubetrail.simulate`` writes (CRI and
  docker nodes, its own message mix; control-plane pods' messages upgraded by the klog parser).
* ``simulator_mix_without_klog`` — the same with kube-system messages read as plain text.

Targets (issue #3): ``cri`` >= 420k lines per CPU-second, the full mix >= 200k.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kubetrail.chunk import Chunk, FileIdentity, Origin

CHUNK_BYTES = 1 << 20
TARGETS = {"cri": 420_000, "payload_mix": 200_000, "simulator_mix": 200_000}
POD = "/var/log/pods/shop_checkout-7d9f8b6c5-x2x9q_6f1c2d3e-0000-4000-8000-000000000001/checkout/0.log"

_WORDS = [
    "request",
    "handled",
    "user",
    "cart",
    "order",
    "payment",
    "shipping",
    "inventory",
    "cache",
    "miss",
    "hit",
    "upstream",
    "timeout",
    "retry",
    "connection",
    "pool",
    "database",
    "query",
    "index",
    "session",
    "token",
    "refresh",
    "worker",
    "queue",
    "job",
    "batch",
    "flush",
    "commit",
]


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def _message(rng: random.Random, kind: str) -> list[str]:
    """One application message (several lines for stack traces)."""
    if kind == "plain":
        return [f"{rng.choice(['INFO', 'WARN', 'ERROR', 'DEBUG'])} [main] c.e.Service - {_text(rng, 150)}"]
    if kind == "json":
        return [
            json.dumps(
                {
                    "level": rng.choice(["info", "warn", "error"]),
                    "ts": "2026-01-01T12:00:00.123Z",
                    "msg": _text(rng, 60),
                    "path": "/api/v1/orders",
                    "status": rng.choice([200, 201, 404, 500]),
                    "latency_ms": round(rng.random() * 100, 2),
                    "trace_id": f"{rng.getrandbits(64):016x}",
                }
            )
        ]
    if kind == "logfmt":
        return [
            f"level={rng.choice(['info', 'warn', 'error'])} ts=2026-01-01T12:00:00.123Z "
            f'msg="{_text(rng, 50)}" path=/api/v1/orders status={rng.choice([200, 404, 500])} '
            f"latency_ms={rng.random() * 100:.2f} trace_id={rng.getrandbits(64):016x}"
        ]
    if kind == "access":
        return [
            f"10.244.{rng.randint(0, 9)}.{rng.randint(1, 250)} - - [01/Jan/2026:12:00:00 +0000] "
            f'"{rng.choice(["GET", "POST"])} /api/v1/orders/{rng.randint(1, 99999)}?page=2 HTTP/1.1" '
            f'{rng.choice([200, 304, 404, 502])} {rng.randint(100, 90000)} "https://shop.example/cart" '
            '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0"'
        ]
    # a Java stack trace, the most common multi-line shape
    return [
        "java.lang.IllegalStateException: order not found",
        "\tat com.example.shop.OrderService.load(OrderService.java:118)",
        "\tat com.example.shop.OrderController.get(OrderController.java:42)",
        "Caused by: java.sql.SQLException: connection reset",
        "\t... 12 more",
    ]


def _cri_lines(rng: random.Random, kinds: list[str], n_messages: int, partial_share: float) -> list[bytes]:
    lines: list[bytes] = []
    t = 1_767_268_800_000_000_000
    for _ in range(n_messages):
        stream = "stdout" if rng.random() < 0.8 else "stderr"
        for text in _message(rng, rng.choice(kinds)):
            t += rng.randint(1_000, 2_000_000)
            ts = datetime.fromtimestamp(t // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            stamp = f"{ts}.{t % 1_000_000_000:09d}".rstrip("0") + "Z"
            body = text.encode()
            if rng.random() < partial_share and len(body) > 20:
                cut = rng.randint(5, len(body) - 5)
                lines.append(f"{stamp} {stream} P ".encode() + body[:cut] + b"\n")
                body = body[cut:]
            lines.append(f"{stamp} {stream} F ".encode() + body + b"\n")
    return lines


def _docker_lines(rng: random.Random, n_messages: int, partial_share: float) -> list[bytes]:
    lines: list[bytes] = []
    for i in range(n_messages):
        stream = "stdout" if rng.random() < 0.8 else "stderr"
        text = _message(rng, "plain")[0]
        stamp = f"2026-01-01T12:{(i // 60) % 60:02d}:{i % 60:02d}.{rng.randint(0, 999999999):09d}Z"
        if rng.random() < partial_share:
            cut = rng.randint(5, len(text) - 5)
            lines.append(json.dumps({"log": text[:cut], "stream": stream, "time": stamp}).encode() + b"\n")
            text = text[cut:]
        lines.append(json.dumps({"log": text + "\n", "stream": stream, "time": stamp}).encode() + b"\n")
    return lines


def _write_repeated(path: Path, block: bytes, size: int) -> int:
    """A file of about ``size`` bytes made of ``block`` (whole lines) repeated."""
    written = 0
    with path.open("wb") as f:
        while written < size:
            f.write(block)
            written += len(block)
    return written


def _chunks(path: Path, node: str, inode: int, source_path: str):  # type: ignore[no-untyped-def]
    with path.open("rb") as f:
        offset = 0
        carry = b""
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                break
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            origin = Origin(
                node=node,
                source="container",
                path=source_path,
                file=FileIdentity(1, inode, "f"),
                offset=offset,
            )
            yield Chunk(origin, data[:cut])
            offset += cut


def _measure(run) -> dict[str, float]:  # type: ignore[no-untyped-def]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    lines, events, size = run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "input_mb": round(size / 1e6, 1),
        "lines": lines,
        "events": events,
        "bytes_per_line": round(size / max(lines, 1), 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "lines_per_s": round(lines / wall),
        "mb_per_s": round(size / 1e6 / wall, 1),
        "lines_per_cpu_s": round(lines / cpu),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def _parse_files(files: list[tuple[Path, str]], parser) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    events = lines = size = 0
    for inode, (path, source_path) in enumerate(files, start=1):
        for chunk in _chunks(path, "node-1", inode, source_path):
            lines += chunk.data.count(b"\n")
            size += len(chunk.data)
            events += parser.parse(chunk, now).num_rows
    events += parser.flush(now, force=True).num_rows
    return lines, events, size


def case(name: str, quick: bool, workdir: Path) -> dict[str, float]:
    rng = random.Random(42)
    mb = 1_000_000
    if name == "cri":
        from kubetrail.formats.cri import CriParser

        block = b"".join(_cri_lines(rng, ["plain", "json", "logfmt", "access"], 20_000, 0.002))
        path = workdir / "cri.log"
        _write_repeated(path, block, (100 if quick else 1000) * mb)
        return _measure(lambda: _parse_files([(path, POD)], CriParser()))
    if name == "docker":
        from kubetrail.formats.docker import DockerParser

        block = b"".join(_docker_lines(rng, 20_000, 0.002))
        path = workdir / "docker.log"
        _write_repeated(path, block, (40 if quick else 256) * mb)
        docker_path = "/var/log/containers/checkout-7d9f8b6c5-x2x9q_shop_checkout-" + "ab" * 32 + ".log"
        return _measure(lambda: _parse_files([(path, docker_path)], DockerParser()))
    from kubetrail.formats.dispatch import Parsing

    if name == "payload_mix":
        kinds = ["plain", "plain", "json", "json", "logfmt", "access", "java"]
        block = b"".join(_cri_lines(rng, kinds, 20_000, 0.002))
        path = workdir / "mix.log"
        _write_repeated(path, block, (40 if quick else 256) * mb)
        return _measure(lambda: _parse_files([(path, POD)], Parsing()))
    if name in ("simulator_mix", "simulator_mix_without_klog"):
        from kubetrail.formats.dispatch import FormatsConfig
        from kubetrail.simulate import SimulationOptions, simulate_batch

        root = workdir / "sim"
        simulate_batch(root, SimulationOptions(hours=0.4 if quick else 2.5, nodes=3, docker_nodes=1))
        files = []
        for path in sorted(root.rglob("*.log*")):
            if path.is_symlink() or not path.is_file() or "/var/log/pods/" not in str(path):
                continue
            if path.suffix == ".gz":
                continue
            files.append((path, "/var/log/pods/" + str(path).split("/var/log/pods/", 1)[1]))
        config = FormatsConfig()
        if name == "simulator_mix_without_klog":
            # the same corpus with control-plane messages read as plain text instead of klog, to show
            # what the klog upgrade (kubetrail.formats.klog.parse_klog_messages) costs
            config = FormatsConfig.model_validate(
                {"overrides": [{"namespace": "kube-system", "parser": "plain"}]}
            )
        return _measure(lambda: _parse_files(files, Parsing(config)))
    raise SystemExit(f"unknown case {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--case", help="run one case in this process (used internally)")
    args = ap.parse_args()
    if args.case:
        workdir = Path(tempfile.mkdtemp(prefix="kt-parse-bench-"))
        try:
            print(json.dumps(case(args.case, args.quick, workdir)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    results: dict[str, object] = {"mode": "quick" if args.quick else "full", "chunk_bytes": CHUNK_BYTES}
    for name in ("cri", "docker", "payload_mix", "simulator_mix", "simulator_mix_without_klog"):
        cmd = [sys.executable, __file__, "--case", name] + (["--quick"] if args.quick else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=dict(os.environ))
        if out.returncode != 0:
            results[name] = {"error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
            continue
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        if name in TARGETS:
            figures["target_lines_per_cpu_s"] = TARGETS[name]
            figures["meets_target"] = figures["lines_per_cpu_s"] >= TARGETS[name]
        results[name] = figures
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
