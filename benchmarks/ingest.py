"""Ingest throughput per receiver: events/s and MB/s acknowledged into the write-ahead log.

The server side runs in this process exactly as ``kubetrail server`` runs it (uvloop, the real
receivers, the real WAL with fsync and group commit, the real byte budget) but with the pipeline's
consumer stopped, so the figure is what the receivers can make durable — parsing and storing run
after the ack and have their own benchmarks. Clients run in separate processes:

- agent: zstd bodies of CRI lines (the agent's wire format), several concurrent clients;
- forward: Fluent Bit-style PackedForward frames with ``chunk`` acks, several connections;
- forward_gzip: CompressedPackedForward;
- audit_webhook, otlp (protobuf), elasticsearch_bulk, syslog (TCP, octet counting).

``pipeline_agent_to_store`` then runs agent requests through the whole pipeline (WAL, the formats'
``Parsing``, the store with dedup) to show what sustained throughput parsing allows.

Usage: ``python benchmarks/ingest.py [--quick]`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing as mp
import os
import resource
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import orjson

LINE = (
    "2026-11-27T05:00:00.123456789Z stdout F "
    '10.0.3.7 - - "GET /api/v1/orders/{i} HTTP/1.1" 200 512 "-" "curl/8"\n'
)


# -- payload builders (clients) -------------------------------------------------------------------


def agent_body(lines: int) -> tuple[bytes, dict[str, str], int, int]:
    from kubetrail.chunk import Chunk, FileIdentity, Origin
    from kubetrail.receivers.agent_protocol import encode_request

    data = "".join(LINE.replace("{i}", str(i)) for i in range(lines)).encode()
    origin = Origin(
        node="n", source="container", path="/var/log/pods/a_b_c/d/0.log", file=FileIdentity(1, 2, "f")
    )
    body, headers = encode_request("n", [Chunk(origin, data)], "zstd")
    return body, headers, lines, len(data)


def packed_frame(entries: int, compressed: bool) -> tuple[bytes, int, int]:
    t = msgpack.ExtType(0, (1764220000).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    stream = b"".join(
        msgpack.packb([t, {"log": LINE.replace("{i}", str(i)), "stream": "stdout"}]) for i in range(entries)
    )
    option: dict[str, Any] = {"size": entries, "chunk": "Y2h1bmstaWQ=", "fluent_signal": 0}
    payload = stream
    if compressed:
        payload = gzip.compress(stream, 1)
        option["compressed"] = "gzip"
    return msgpack.packb(["kube.var.log", payload, option], use_bin_type=True), entries, len(stream)


def otlp_body(records: int) -> tuple[bytes, int, int]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "k8s.pod.name", "web-1"
    sl = rl.scope_logs.add()
    for i in range(records):
        lr = sl.log_records.add()
        lr.time_unix_nano = 1764220000_000000000 + i
        lr.body.string_value = LINE.replace("{i}", str(i))
    body = req.SerializeToString()
    return body, records, len(body)


def audit_body(events: int) -> tuple[bytes, int, int]:
    item = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "x",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/pods",
        "verb": "list",
        "user": {"username": "system:serviceaccount:shop:web"},
        "sourceIPs": ["10.0.0.7"],
        "objectRef": {"resource": "pods", "namespace": "shop"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": "2026-11-27T05:00:00.100000Z",
        "stageTimestamp": "2026-11-27T05:00:00.120000Z",
    }
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [item] * events})
    return body, events, len(body)


def bulk_body(docs: int) -> tuple[bytes, int, int]:
    doc = orjson.dumps(
        {"@timestamp": "2026-11-27T05:00:00Z", "message": LINE.strip(), "kubernetes": {"pod": {"name": "p"}}}
    )
    body = b"".join(b'{"create":{"_index":"filebeat"}}\n' + doc + b"\n" for _ in range(docs))
    return body, docs, len(body)


def syslog_stream(messages: int) -> tuple[bytes, int, int]:
    msg = b"<13>1 2026-11-27T05:00:00.418846+00:00 vm sshd 42 - - Failed password for root from 10.0.0.9\n"
    frame = str(len(msg)).encode() + b" " + msg
    return frame * messages, messages, len(frame) * messages


# -- client processes -------------------------------------------------------------------------------


def http_client(url: str, body: bytes, headers: dict[str, str], requests: int, out: Any) -> None:
    import httpx

    started = time.monotonic()
    with httpx.Client(timeout=60) as client:
        for _ in range(requests):
            r = client.post(url, content=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    out.put((started, time.monotonic()))


def forward_client(port: int, frame: bytes, frames: int, out: Any) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        unpacker = msgpack.Unpacker(raw=False)
        acks = 0
        window = 8
        sent = 0
        while acks < frames:
            while sent < frames and sent - acks < window:
                sock.sendall(frame)
                sent += 1
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("forward connection closed")
            unpacker.feed(data)
            acks += sum(1 for _ in unpacker)
    out.put((started, time.monotonic()))


def stream_client(port: int, data: bytes, repeats: int, out: Any) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(repeats):
            sock.sendall(data)
    out.put((started, time.monotonic()))


# -- the server side ----------------------------------------------------------------------------------


class Harness:
    def __init__(self, workdir: Path) -> None:
        from kubetrail.receivers._context import ReceiverContext
        from kubetrail.server.backpressure import ByteBudget
        from kubetrail.server.metrics import ServerMetrics
        from kubetrail.server.pipeline import Pipeline
        from kubetrail.server.settings import LimitsConfig
        from kubetrail.server.wal import WriteAheadLog

        self.wal = WriteAheadLog(workdir / "wal", segment_bytes=256 << 20)
        self.wal.open()
        metrics = ServerMetrics()
        # the consumer is never started: this measures receivers + WAL only
        self.pipeline = Pipeline(self.wal, None, None, budget=ByteBudget(1 << 40), metrics=metrics)  # type: ignore[arg-type]
        limits = LimitsConfig(
            max_body_bytes=256 << 20, max_decompressed_bytes=1 << 30, max_frame_bytes=64 << 20
        )
        self.ctx = ReceiverContext(self.pipeline, metrics, limits)
        self.receivers: dict[str, Any] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def add(self, name: str, options: dict[str, Any]) -> tuple[str, int]:
        from kubetrail.components import receivers

        receiver = receivers.build(name, {"listen": "127.0.0.1:0", **options})
        self.receivers[name] = receiver
        self.tasks.append(asyncio.ensure_future(receiver.run(self.ctx)))  # type: ignore[attr-defined]
        await receiver.started.wait()  # type: ignore[attr-defined]
        return receiver.address  # type: ignore[attr-defined,no-any-return]

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for receiver in self.receivers.values():
            await receiver.stop()
        await asyncio.wait(self.tasks, timeout=10)
        await self.wal.close()


async def measure(
    clients: list[tuple[Any, tuple[Any, ...]]], events: int, raw_bytes: int, harness: Any
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    wal = harness.wal
    wal_before, fsync_before = wal.bytes_written, wal.fsyncs
    procs = [ctx.Process(target=fn, args=(*args, out)) for fn, args in clients]
    for p in procs:
        p.start()
    spans = [await asyncio.to_thread(out.get, True, 600) for _ in procs]
    for p in procs:
        await asyncio.to_thread(p.join)
        if p.exitcode:
            raise RuntimeError(f"client failed with exit code {p.exitcode}")
    seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    pipeline = harness.pipeline
    pipeline._queue.clear()  # benchmark only: nothing consumes these records, free them
    pipeline.budget.used = 0
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "mb_per_s": round(raw_bytes / seconds / 1e6, 1),
        "wal_mb_per_s": round((wal.bytes_written - wal_before) / seconds / 1e6, 1),
        "fsyncs": wal.fsyncs - fsync_before,
    }


async def pipeline_throughput(workdir: Path, requests: int, lines: int) -> dict[str, float]:
    """Agent requests through the whole pipeline (WAL, Parsing, store with dedup, flush): events/s."""
    from kubetrail.chunk import Chunk, FileIdentity, Origin
    from kubetrail.formats.dispatch import Parsing
    from kubetrail.receivers.agent_protocol import decode_request, encode_request
    from kubetrail.server.pipeline import Pipeline
    from kubetrail.server.wal import WriteAheadLog
    from kubetrail.store import Store

    data = "".join(LINE.replace("{i}", str(i)) for i in range(lines)).encode()
    bodies = []
    for r in range(requests):  # distinct origins: distinct event ids (the store would drop repeats)
        origin = Origin(
            node=f"n{r % 8}",
            source="container",
            path=f"/var/log/pods/shop_web-{r % 8}_uid{r % 8}/app/0.log",
            file=FileIdentity(1, r % 8, "f"),
            offset=(r // 8) * len(data),
        )
        body, _ = encode_request("n", [Chunk(origin, data)], "zstd")
        bodies.append((body, decode_request(body, "zstd")))
    wal = WriteAheadLog(workdir / "pwal")
    wal.open()
    store = Store(workdir / "pstore")
    pipeline = Pipeline(wal, Parsing(), store, flush_interval_secs=3600, max_batch_bytes=8 << 20)
    pipeline.start()
    started = time.monotonic()
    await asyncio.gather(*(pipeline.submit("agent", "agent+zstd", b, d) for b, d in bodies))
    await pipeline.stop()  # drains, flushes parsers and the store, checkpoints
    seconds = time.monotonic() - started
    stored = store.sql("SELECT count(*) AS n FROM logs").column("n")[0].as_py()
    store.close()
    await wal.close()
    events = requests * lines
    return {
        "events": events,
        "stored_rows": stored,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "mb_per_s": round(events * len(data) / lines / seconds / 1e6, 1),
    }


async def run(quick: bool) -> dict[str, Any]:
    scale = 1 if quick else 5
    workdir = Path(tempfile.mkdtemp(prefix="kt-ingest-"))
    harness = Harness(workdir)
    results: dict[str, Any] = {}
    try:
        host, port = await harness.add("agent", {"type": "agent"})
        body, headers, lines, raw = agent_body(5000)
        n = 40 * scale
        url = f"http://{host}:{port}/api/v1/agent/chunks"
        results["agent"] = await measure(
            [(http_client, (url, body, headers, n))] * 4, 4 * n * lines, 4 * n * raw, harness
        )
        _, fport = await harness.add("forward", {"type": "forward", "heartbeat_udp": False})
        for name, compressed in (("forward_packed", False), ("forward_compressed", True)):
            frame, entries, raw = packed_frame(2000, compressed)
            n = 100 * scale
            results[name] = await measure(
                [(forward_client, (fport, frame, n))] * 4, 4 * n * entries, 4 * n * raw, harness
            )
        host, port = await harness.add("audit_webhook", {"type": "audit_webhook"})
        body, events, raw = audit_body(500)
        n = 20 * scale
        url = f"http://{host}:{port}/api/v1/audit"
        results["audit_webhook"] = await measure(
            [(http_client, (url, body, {"Content-Type": "application/json"}, n))] * 2,
            2 * n * events,
            2 * n * raw,
            harness,
        )
        host, port = await harness.add("otlp", {"type": "otlp"})
        body, records, raw = otlp_body(2000)
        n = 20 * scale
        url = f"http://{host}:{port}/v1/logs"
        results["otlp"] = await measure(
            [(http_client, (url, body, {"Content-Type": "application/x-protobuf"}, n))] * 2,
            2 * n * records,
            2 * n * raw,
            harness,
        )
        host, port = await harness.add("elasticsearch_bulk", {"type": "elasticsearch_bulk"})
        body, docs, raw = bulk_body(2000)
        n = 10 * scale
        url = f"http://{host}:{port}/_bulk"
        results["elasticsearch_bulk"] = await measure(
            [(http_client, (url, body, {"Content-Type": "application/x-ndjson"}, n))] * 2,
            2 * n * docs,
            2 * n * raw,
            harness,
        )
        _, sport = await harness.add("syslog", {"type": "syslog"})
        data, messages, raw = syslog_stream(10_000)
        n = 10 * scale
        before = harness.wal.next_seq
        results["syslog_tcp"] = await measure(
            [(stream_client, (sport, data, n))] * 2, 2 * n * messages, 2 * n * raw, harness
        )
        # syslog has no acks: wait until everything sent is in the WAL before the figure counts
        expected = 2 * n * messages
        started = time.monotonic()
        while (
            harness.ctx.metrics.requests.labels("syslog", "ok")._value.get() < expected
            and time.monotonic() - started < 60
        ):
            await asyncio.sleep(0.05)
        await harness.wal.drain()
        total = time.monotonic() - started + results["syslog_tcp"]["seconds"]
        results["syslog_tcp"]["seconds"] = round(total, 3)
        results["syslog_tcp"]["events_per_s"] = round(expected / total)
        results["syslog_tcp"]["mb_per_s"] = round(2 * n * raw / total / 1e6, 1)
        results["syslog_tcp"]["wal_records"] = harness.wal.next_seq - before
        await harness.close()
        results_pipeline = await pipeline_throughput(workdir, 16 * scale, 5000)
    finally:
        await harness.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "ingest",
        "mode": "quick" if quick else "full",
        "cpus": os.cpu_count(),
        "receivers": results,
        "agent_events_per_s": results["agent"]["events_per_s"],
        "forward_packed_events_per_s": results["forward_packed"]["events_per_s"],
        "pipeline_agent_to_store": results_pipeline,
        "pipeline_events_per_s": results_pipeline["events_per_s"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (< 50 s)")
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args.quick))
    except ImportError:
        result = asyncio.run(run(args.quick))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
