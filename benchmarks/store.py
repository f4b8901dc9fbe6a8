"""Store benchmark: ingest, bytes on disk, needle search and aggregations, side by side with chDB
(ClickHouse MergeTree + tokenbf index, in-process, holding the same rows and columns) and plain
DuckDB over the unsorted Parquet the pipeline wrote.

    python benchmarks/store.py --quick                      # simulator, 3 nodes x 30 min, < 50 s
    python benchmarks/store.py                              # simulator, 13 nodes x 24 h: >= 50M events
    python benchmarks/store.py --hours 2.5 --nodes 9        # a mid-size run
    python benchmarks/store.py --quick --corpus generated   # numpy corpus, high entropy

The default corpus is real log files written by ``kubetrail.simulate`` and parsed by the server's
``Parsing`` stage; ``--corpus generated`` builds events in bulk with numpy. Query latencies are
measured with the engines taking turns (same machine load for each). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubetrail.chunk import FileIdentity, Origin, file_chunks
from kubetrail.schema import TIMESTAMP, conform
from kubetrail.store import Store, StoreConfig
from kubetrail.store.config import CompactionConfig, QueryLimits
from kubetrail.store.retention import compact, purge_superseded

T0 = 1_764_201_600 * 10**9
DAY_NS = 86_400 * 10**9
NEEDLE = "kt7needle93x"
ATTACKER_IP = "203.0.113.77"
NAMESPACES = [f"team-{i:02d}" for i in range(40)] + ["kube-system", "monitoring", "payments", "default"]
USERS = [f"user{i}@corp.example" for i in range(200)] + [
    f"system:serviceaccount:ns{i}:sa" for i in range(100)
]
VERBS = np.array(["get", "list", "watch", "create", "update", "patch", "delete"])
RESOURCES = np.array(["pods", "secrets", "configmaps", "deployments", "services", "events", "leases"])
PATHS = np.array(["/api/v1/orders", "/healthz", "/metrics", "/api/v1/cart", "/login", "/static/app.js"])
LEVELS = np.array(["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"])
APP_MSGS = np.array(
    [
        "request completed",
        "cache miss for key",
        "connection reset by peer",
        "retrying upstream call",
        "user session refreshed",
        "payment authorised",
        "db query slow",
    ]
)


def _s(values: np.ndarray | list[str]) -> pa.Array:
    return pa.array(np.asarray(values).astype(str))


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _ip(rng: np.random.Generator, n: int, prefix: str = "10") -> pa.Array:
    octets = [_s(rng.integers(0, 256, n)) for _ in range(3)]
    return _join(prefix, *octets, sep=".")


def generate(n: int, seed: int, start_ns: int, span_ns: int, offset: int) -> tuple[pa.RecordBatch, int]:
    """One chunk of the corpus (full-schema batch) and the raw bytes its source lines had."""
    rng = np.random.default_rng(seed)
    ts_int = start_ns + np.sort(rng.integers(0, span_ns, n))
    ts = pa.array(ts_int, pa.int64()).cast(TIMESTAMP)
    iso = pc.strftime(ts, format="%Y-%m-%dT%H:%M:%S")
    kind = rng.choice(3, n, p=[0.75, 0.10, 0.15])  # container, node, audit
    ns_idx = rng.zipf(1.6, n) % len(NAMESPACES)
    ns = _s(np.array(NAMESPACES)[ns_idx])
    pod_no = rng.integers(0, 25, n)
    pod = _join(ns, _s(pod_no), sep="-app-")
    uid = _join(_s(ns_idx * 1000 + pod_no), "4f1c-9a7e-0d2b5c6e8f10", sep="-")
    node = _join("node", _s(rng.integers(0, 30, n)), sep="-")
    client_ip = _ip(rng, n)
    attack = rng.random(n) < 300 / 1_000_000
    client_ip = pc.if_else(pa.array(attack), ATTACKER_IP, client_ip)
    rid = _s(rng.integers(10**11, 10**12, n))
    latency = _s(np.round(rng.gamma(2.0, 30.0, n), 1))
    access = _join(
        client_ip,
        ' - - "GET ',
        _s(PATHS[rng.integers(0, len(PATHS), n)]),
        ' HTTP/1.1" ',
        _s(rng.choice([200, 200, 200, 304, 404, 500], n)),
        " ",
        _s(rng.integers(100, 50_000, n)),
        " rid=",
        rid,
        " ms=",
        latency,
    )
    app = _join(
        "level=",
        _s(LEVELS[rng.integers(0, len(LEVELS), n)]),
        " msg=",
        _s(APP_MSGS[rng.integers(0, len(APP_MSGS), n)]),
        " request_id=",
        rid,
        " duration_ms=",
        latency,
        " peer=",
        client_ip,
    )
    container_msg = pc.if_else(pa.array(rng.random(n) < 0.5), access, app)
    node_msg = _join(
        "I1127 kubelet.go:",
        _s(rng.integers(100, 3000, n)),
        '] "SyncLoop (probe)" probe="readiness" status="ready" pod="',
        ns,
        "/",
        pod,
        '"',
    )
    user = _s(np.array(USERS)[rng.zipf(1.3, n) % len(USERS)])
    verb = _s(VERBS[rng.integers(0, len(VERBS), n)])
    resource = _s(RESOURCES[rng.integers(0, len(RESOURCES), n)])
    audit_id = _join(_s(rng.integers(10**15, 10**16, n)), "-aud", sep="")
    uri = _join("/api/v1/namespaces/", ns, "/", resource, sep="")
    audit_msg = _join(verb, " ", resource, " by ", user, " from ", client_ip)
    is_c, is_n, is_a = (pa.array(kind == k) for k in range(3))
    message = pc.if_else(is_c, container_msg, pc.if_else(is_n, node_msg, audit_msg))
    if offset == 0:
        message = pc.if_else(pa.array(np.arange(n) == n // 2), f"panic: token {NEEDLE} rejected", message)
    raw_container = _join(iso, ".123456789Z stdout F ", container_msg, "\n")
    raw_node = _join(node_msg, "\n")
    raw_audit = _join(
        '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"',
        audit_id,
        '","stage":"ResponseComplete","requestURI":"',
        uri,
        '","verb":"',
        verb,
        '","user":{"username":"',
        user,
        '","groups":["system:authenticated"]},"sourceIPs":["',
        client_ip,
        '"],"userAgent":"kubectl/v1.31.0 (linux/amd64) kubernetes/abc1234","objectRef":{"resource":"',
        resource,
        '","namespace":"',
        ns,
        '","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"',
        iso,
        '.123456Z","stageTimestamp":"',
        iso,
        '.223456Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}\n',
    )
    raw = pc.if_else(is_c, raw_container, pc.if_else(is_n, raw_node, raw_audit))
    raw_bytes = int(pc.sum(pc.binary_length(raw)).as_py())
    null_s = pa.nulls(n, pa.string())
    dataset = pc.if_else(is_c, "container", pc.if_else(is_n, "node", "audit"))
    cols: dict[str, Any] = {
        "@timestamp": ts,
        "event.id": _join("b", _s(np.arange(offset, offset + n)), sep="-"),
        "event.ingested": ts,
        "event.dataset": dataset,
        "event.module": pc.if_else(is_c, "cri", pc.if_else(is_n, "klog", "audit")),
        "message": message,
        "stream": pc.if_else(is_c, "stdout", null_s),
        "host.name": node,
        "kubernetes.namespace": pc.if_else(is_n, null_s, ns),
        "kubernetes.pod.name": pc.if_else(is_c, pod, null_s),
        "kubernetes.pod.uid": pc.if_else(is_c, uid, null_s),
        "kubernetes.container.name": pc.if_else(is_c, "app", null_s),
        "kubernetes.container.restart_count": pa.array(np.zeros(n, np.int32)),
        "container.image.name": pc.if_else(is_c, _join("registry.example/", ns, ":1.4.2"), null_s),
        "source.ip": pc.if_else(is_n, null_s, client_ip),
        "user.name": pc.if_else(is_a, user, null_s),
        "event.action": pc.if_else(is_a, verb, null_s),
        "kubernetes.audit.auditID": pc.if_else(is_a, audit_id, null_s),
        "kubernetes.audit.verb": pc.if_else(is_a, verb, null_s),
        "kubernetes.audit.user.username": pc.if_else(is_a, user, null_s),
        "kubernetes.audit.objectRef.resource": pc.if_else(is_a, resource, null_s),
        "kubernetes.audit.objectRef.namespace": pc.if_else(is_a, ns, null_s),
        "kubernetes.audit.requestURI": pc.if_else(is_a, uri, null_s),
        "kubernetes.audit.userAgent": pc.if_else(
            is_a, "kubectl/v1.31.0 (linux/amd64) kubernetes/abc1234", null_s
        ),
        "kubernetes.audit.responseStatus.code": pc.if_else(
            is_a, pa.scalar(200, pa.int32()), pa.nulls(n, pa.int32())
        ),
    }
    return conform(cols, n), raw_bytes


Corpus = Iterator[tuple[pa.RecordBatch, int]]
ENGINES = ("store", "duckdb_plain", "chdb")
Queries = dict[str, tuple[str, str, str]]  # name -> (hunting query, DuckDB WHERE, chDB WHERE)


def generated_corpus(quick: bool) -> Corpus:
    """The numpy-generated corpus (high-entropy: random IPs, request ids, latencies)."""
    n_total, chunk = (400_000, 100_000) if quick else (50_000_000, 1_000_000)
    chunks = n_total // chunk
    span = DAY_NS // chunks
    for i in range(chunks):
        yield generate(chunk, seed=i, start_ns=T0 + i * span, span_ns=span, offset=i * chunk)


def _simulated_files(root: Path) -> list[tuple[Path, str, str, str]]:
    """(path, node, source, path on the node) of every log file the simulator left (rotated .gz aside)."""
    files: list[tuple[Path, str, str, str]] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.suffix == ".gz":
            continue
        rel = str(path.relative_to(root))
        node, _, inner = rel.partition("/")
        inner = "/" + inner
        if inner.startswith("/var/log/pods/"):
            files.append((path, node, "container", inner))
        elif inner.startswith("/var/log/kubernetes/audit/"):
            files.append((path, node, "audit", inner))
        elif inner.startswith("/var/log/kubelet.log"):
            files.append((path, node, "klog", inner))
        elif inner.startswith("/var/log/syslog"):
            files.append((path, node, "syslog", inner))
    return files


def simulation_windows(quick: bool, hours: float | None, nodes: int | None) -> list[Any]:
    """The simulations a corpus is made of: runs longer than an hour are simulated an hour at a time
    (a new seed each hour, as if the cluster's pods were replaced), so the simulator's memory stays
    bounded and kubelet's 10 MiB rotation never deletes lines before they are read."""
    from kubetrail.simulate import SimulationOptions
    from kubetrail.simulate.options import DEFAULT_START

    total = hours or (0.5 if quick else 24.0)
    n = nodes or (3 if quick else 13)
    start = datetime.fromisoformat(DEFAULT_START.replace("Z", "+00:00"))
    windows = []
    done, w = 0.0, 0
    while done < total - 1e-9:
        span = min(1.0, total - done)
        at = (start + timedelta(hours=done)).strftime("%Y-%m-%dT%H:%M:%SZ")
        windows.append(SimulationOptions(hours=span, nodes=n, seed=1 + w, start=at))
        done, w = done + span, w + 1
    return windows


def simulator_corpus(
    quick: bool, workdir: Path, hours: float | None = None, nodes: int | None = None
) -> Corpus:
    """``kubetrail.simulate`` writes a cluster's log files; the server's ``Parsing`` stage parses them.

    Memory stays bounded at any size: files are read in 1 MiB chunks and handed over 200k rows at a time.
    """
    from kubetrail.formats.dispatch import Parsing
    from kubetrail.simulate import simulate_batch
    from kubetrail.simulate.timefmt import NS, parse_start

    parsing = Parsing()
    pending: list[pa.RecordBatch] = []
    rows = raw = inode = 0
    for w, options in enumerate(simulation_windows(quick, hours, nodes)):
        root = workdir / f"sim-{w:03d}"
        simulate_batch(root, options, workers=1 if quick else 2)
        # received as a live agent would: as the window ends (the year of syslog/klog lines is the
        # one nearest the receive time; the real clock would put January lines in the next year)
        end_ns = parse_start(options.start) + int(options.hours * 3600 * NS)
        now = datetime.fromtimestamp(end_ns / NS, UTC)
        for path, node, source, inner in _simulated_files(root):
            inode += 1  # unique across windows: the file identity is part of every event id
            origin = Origin(node=node, source=source, path=inner, file=FileIdentity(1, inode, "f"))
            for chunk in file_chunks(path, origin):
                raw += len(chunk.data)
                batch = parsing.parse(chunk, now)
                if batch.num_rows:
                    pending.append(batch)
                    rows += batch.num_rows
                if rows >= 200_000:
                    yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0], raw
                    pending, rows, raw = [], 0, 0
        shutil.rmtree(root, ignore_errors=True)
    last = parsing.flush(now, force=True)
    if last.num_rows:
        pending.append(last)
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0], raw


def _produce(args: tuple[bool, Path, float | None, int | None], outbox: Any) -> None:
    """Child process: parse the simulator corpus and hand each batch over as an Arrow IPC file."""
    quick, work, hours, nodes = args
    spool = work / "batches"
    spool.mkdir(exist_ok=True)
    for i, (batch, raw) in enumerate(simulator_corpus(quick, work, hours, nodes)):
        path = spool / f"batch-{i:06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        outbox.put((str(path), raw))
    outbox.put(None)


def pipelined_simulator_corpus(
    quick: bool, workdir: Path, hours: float | None = None, nodes: int | None = None
) -> Corpus:
    """``simulator_corpus`` parsed in a second process, so parsing and the store's ingest use both
    cores (full runs: the ingest figure is still the store's own time)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    outbox = ctx.Queue(maxsize=4)  # bounds the batches waiting on disk
    # not a daemon: the simulator starts worker processes of its own
    worker = ctx.Process(target=_produce, args=((quick, workdir, hours, nodes), outbox))
    worker.start()
    try:
        while True:
            try:
                item = outbox.get(timeout=5)
            except queue.Empty:
                if not worker.is_alive():
                    raise SystemExit(f"corpus process died (exit {worker.exitcode})") from None
                continue
            if item is None:
                break
            path, raw = item
            with pa.OSFile(path) as source:  # read into memory: the file is deleted next
                batch = pa.ipc.open_file(source).get_batch(0)
            yield batch, raw
            Path(path).unlink()
    finally:
        worker.join(timeout=5)
        if worker.is_alive():
            worker.terminate()
    if worker.exitcode not in (0, None):
        raise SystemExit(f"corpus process failed (exit {worker.exitcode})")


def _planted(ts_ns: int) -> pa.RecordBatch:
    """One event carrying the rare token (the simulator has no token known to occur once)."""
    cols = {
        "@timestamp": pa.array([ts_ns], pa.int64()).cast(TIMESTAMP),
        "event.id": pa.array(["planted-needle"]),
        "event.dataset": pa.array(["container"]),
        "kubernetes.namespace": pa.array(["shop"]),
        "message": pa.array([f"panic: token {NEEDLE} rejected"]),
    }
    return conform(cols, 1)


def simulator_queries(store: Store) -> Queries:
    """Needles chosen from the data: the rarest pod uid and the rarest client IP."""
    uid = (
        store.sql(
            'SELECT "kubernetes.pod.uid" AS u, count(*) AS n FROM logs '
            'WHERE "kubernetes.pod.uid" IS NOT NULL GROUP BY u ORDER BY n, u LIMIT 1'
        )
        .column("u")[0]
        .as_py()
    )
    ip = (
        store.sql(
            'SELECT "source.ip" AS ip, count(*) AS n FROM logs WHERE "source.ip" IS NOT NULL '
            "GROUP BY ip ORDER BY n, ip LIMIT 1"
        )
        .column("ip")[0]
        .as_py()
    )
    return {
        "needle_rare_token": (
            f'"{NEEDLE}"',
            f"regexp_matches(message, '(^|[^0-9A-Za-z]){NEEDLE}($|[^0-9A-Za-z])')",
            f"hasToken(message, '{NEEDLE}')",
        ),
        "needle_ip": (f'source.ip:"{ip}"', f"\"source.ip\" = '{ip}'", f"source_ip = '{ip}'"),
        "needle_pod_uid": (
            f"kubernetes.pod.uid:{uid}",
            f"\"kubernetes.pod.uid\" = '{uid}'",
            f"kubernetes_pod_uid = '{uid}'",
        ),
    }


def generated_queries(store: Store) -> Queries:
    uid = "30003-4f1c-9a7e-0d2b5c6e8f10"  # a pod of a quiet namespace
    return {
        "needle_rare_token": (
            f'"{NEEDLE}"',
            f"regexp_matches(message, '(^|[^0-9A-Za-z]){NEEDLE}($|[^0-9A-Za-z])')",
            f"hasToken(message, '{NEEDLE}')",
        ),
        "needle_ip": (
            f'"{ATTACKER_IP}"',
            f"message LIKE '%{ATTACKER_IP}%'",
            f"message LIKE '%{ATTACKER_IP}%'",
        ),
        "needle_pod_uid": (
            f"kubernetes.pod.uid:{uid}",
            f"\"kubernetes.pod.uid\" = '{uid}'",
            f"kubernetes_pod_uid = '{uid}'",
        ),
    }


def interleaved(name: str, engines: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """p50/p95 of each engine running the same query, taking turns so every engine sees the same
    machine load (the machine is shared: measuring one engine after the other biases the result)."""
    for fn in engines.values():
        fn()  # warm-up (file metadata, catalog)
    samples: dict[str, list[float]] = {engine: [] for engine in engines}
    order = list(engines)
    for r in range(repeat):
        for engine in order[r % len(order) :] + order[: r % len(order)]:
            t = time.perf_counter()
            engines[engine]()
            samples[engine].append((time.perf_counter() - t) * 1000)
    out = {}
    for engine, values in samples.items():
        values.sort()
        out[f"{engine}_{name}_p50_ms"] = round(statistics.median(values), 1)
        out[f"{engine}_{name}_p95_ms"] = round(values[int(0.95 * (len(values) - 1))], 1)
    return out


def aggregations() -> dict[str, tuple[str, str, str]]:
    """name -> (the hunting query the store runs, SQL over plain DuckDB's ``logs``, SQL over chDB)."""
    return {
        "agg_ns_per_minute": (
            "* | timechart span=1m count() by kubernetes.namespace",
            'SELECT "kubernetes.namespace" AS ns, time_bucket(INTERVAL 1 minute, "@timestamp") AS minute, '
            "count(*) AS n FROM logs GROUP BY ALL",
            "SELECT kubernetes_namespace, toStartOfMinute(_timestamp) m, count() FROM kt.logs "
            "GROUP BY kubernetes_namespace, m",
        ),
        "agg_top_users_by_verb": (
            "event.dataset:audit | stats count() by kubernetes.audit.verb, kubernetes.audit.user.username "
            "| sort -count | head 10",
            'SELECT "kubernetes.audit.verb" AS verb, "kubernetes.audit.user.username" AS user, count(*) AS n '
            "FROM logs WHERE \"event.dataset\" = 'audit' GROUP BY ALL ORDER BY n DESC LIMIT 10",
            "SELECT kubernetes_audit_verb, kubernetes_audit_user_username, count() c FROM kt.logs "
            "WHERE event_dataset = 'audit' GROUP BY ALL ORDER BY c DESC LIMIT 10",
        ),
    }


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_store(root: Path) -> Store:
    return Store(
        root,
        StoreConfig(
            flush_max_rows=4_000_000,
            flush_max_age_secs=3600,
            delete_grace_secs=0,
            auto_maintenance=False,
            limits=QueryLimits(max_rows=1_000_000),
            compaction=CompactionConfig(
                small_segment_bytes=1 << 40, target_segment_bytes=256 << 20, threads=2
            ),
        ),
    )


def build(
    work: Path, quick: bool, corpus_name: str, hours: float | None, nodes: int | None
) -> dict[str, Any]:
    """Ingest the corpus into the store (then compact), plain Parquet and chDB; the figures of that."""
    out: dict[str, Any] = {"mode": "quick" if quick else "full", "corpus": corpus_name}
    store = bench_store(work / "store")
    plain_dir = work / "plain"
    plain_dir.mkdir()
    if corpus_name == "generated":
        corpus = generated_corpus(quick)
    elif quick:
        corpus = simulator_corpus(quick, work, hours, nodes)
    else:
        corpus = pipelined_simulator_corpus(quick, work, hours, nodes)
    raw_total = events = 0
    ingest_secs = 0.0
    first: pa.RecordBatch | None = None
    for i, (batch, raw_bytes) in enumerate(corpus):
        first = batch if first is None else first
        raw_total += raw_bytes
        events += batch.num_rows
        t = time.perf_counter()
        store.append(batch)
        store.flush()  # the server flushes on a timer: several small segments per hour
        ingest_secs += time.perf_counter() - t
        pq.write_table(pa.Table.from_batches([batch]), plain_dir / f"part-{i:05d}.parquet")
    if first is None:
        raise SystemExit("empty corpus")
    if corpus_name == "simulator":
        mid = pc.min_max(first.column("@timestamp"))["max"].cast(pa.int64()).as_py()
        planted = _planted(mid)
        store.append(planted)
        pq.write_table(pa.Table.from_batches([planted]), plain_dir / "part-planted.parquet")
    t = time.perf_counter()
    store.flush()
    ingest_secs += time.perf_counter() - t
    t = time.perf_counter()
    redelivered = store.append(first)
    dedup_secs = time.perf_counter() - t
    hot_bytes = store.disk_bytes()
    t = time.perf_counter()
    merged = compact(store, now_ns=time.time_ns() + DAY_NS * 3650)
    compact_secs = time.perf_counter() - t
    purge_superseded(store)
    store_bytes = store.disk_bytes()
    catalog_bytes = sum(p.stat().st_size for p in store.root.glob("catalog.db*"))
    plain_bytes = sum(p.stat().st_size for p in plain_dir.glob("*.parquet"))
    out.update(
        events=events,
        raw_bytes=raw_total,
        store_ingest_events_per_s=round(events / ingest_secs),
        store_redelivery_check_events_per_s=round(first.num_rows / dedup_secs),
        store_redelivered_rows_stored=redelivered,
        store_segments=store.stats().get("hot_segments", 0),
        store_bytes=store_bytes,
        store_catalog_bytes=catalog_bytes,
        store_compression_ratio=round(raw_total / store_bytes, 2),
        store_compression_ratio_with_catalog=round(raw_total / (store_bytes + catalog_bytes), 2),
        store_compression_ratio_before_compaction=round(raw_total / hot_bytes, 2),
        store_compacted_segments=merged,
        store_compaction_events_per_s=round(events / compact_secs) if merged else 0,
        plain_parquet_bytes=plain_bytes,
        plain_parquet_compression_ratio=round(raw_total / plain_bytes, 2),
    )
    out.update(sort_order_bytes(work, first))
    store.close()
    chdb = chdb_load(plain_dir, raw_total, out)
    if chdb is not None:
        chdb.close()
    out["build_peak_rss_mb"] = peak_rss_mb()
    return out


def measure(work: Path, quick: bool, corpus_name: str, only: Sequence[str] = ENGINES) -> dict[str, Any]:
    """Needle searches and aggregations, the engines (``only`` these) taking turns on the same data."""
    repeat = 3 if quick else 15
    needle_repeat = 11 if quick else 31  # needles take milliseconds: samples for a stable median
    out: dict[str, Any] = {}
    store = bench_store(work / "store")
    queries = generated_queries(store) if corpus_name == "generated" else simulator_queries(store)
    con = plain_duckdb(work / "plain")
    chdb = chdb_open(work / "chdb")
    for name, (q, plain_where, ch_where) in queries.items():
        engines: dict[str, Callable[[], Any]] = {
            "store": lambda q=q: store.search(q, limit=10_000).table,  # type: ignore[misc]
            "duckdb_plain": lambda w=plain_where: con.sql(
                f"SELECT * FROM logs WHERE {w} LIMIT 10000"
            ).to_arrow_table(),
        }
        if chdb is not None:
            engines["chdb"] = lambda w=ch_where: chdb.query(
                f"SELECT * FROM kt.logs WHERE {w} LIMIT 10000", "ArrowTable"
            )
        engines = {k: v for k, v in engines.items() if k in only}
        for engine, fn in engines.items():
            out[f"{engine}_{name}_rows"] = fn().num_rows
        out.update(store_reads(store, q, name))
        out.update(interleaved(name, engines, needle_repeat))
    for name, (hunt, plain_sql, ch_sql) in aggregations().items():
        engines = {
            "store": lambda q=hunt: store.search(q, limit=1_000_000).table,  # type: ignore[misc]
            "duckdb_plain": lambda q=plain_sql: con.sql(q).to_arrow_table(),  # type: ignore[misc]
        }
        if chdb is not None:
            engines["chdb"] = lambda q=ch_sql: chdb.query(q, "ArrowTable")  # type: ignore[misc]
        engines = {k: v for k, v in engines.items() if k in only}
        for engine, fn in engines.items():
            out[f"{engine}_{name}_rows"] = fn().num_rows
        out.update(interleaved(name, engines, repeat))
    con.close()
    if chdb is not None:
        chdb.close()
    store.close()
    return out


def store_reads(store: Store, query: str, name: str) -> dict[str, int]:
    """What the token index left the store to read for a needle: segments and rows (blocks)."""
    _, needles, _ = store.compile(store.compile_text(query))
    scan = store.scan_set(needles=needles)
    rows = 0
    for file in scan.files:
        ranges = scan.row_ranges.get(file)
        rows += sum(b - a + 1 for a, b in ranges) if ranges else pq.read_metadata(file).num_rows
    return {
        f"store_{name}_segments_read": len(scan.files),
        f"store_{name}_segments_total": scan.segments_total,
        f"store_{name}_rows_read": rows,
    }


def run(
    quick: bool,
    corpus_name: str,
    hours: float | None = None,
    nodes: int | None = None,
    workdir: Path | None = None,
    measure_only: bool = False,
    only: Sequence[str] = ENGINES,
) -> dict[str, Any]:
    """Build then measure; with ``workdir`` the built data is kept (and ``measure_only`` reuses it)."""
    work = workdir or Path(tempfile.mkdtemp(prefix="kt-bench-store-"))
    try:
        if measure_only:
            out = json.loads((work / "build.json").read_text())
        else:
            work.mkdir(parents=True, exist_ok=True)
            out = build(work, quick, corpus_name, hours, nodes)
            (work / "build.json").write_text(json.dumps(out))
        out.update(measure(work, out["mode"] == "quick", out["corpus"], only))
        out["peak_rss_mb"] = peak_rss_mb()
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return out


def sort_order_bytes(work: Path, sample: pa.RecordBatch) -> dict[str, int]:
    """Bytes of the same rows under the two candidate row orders (the store's default first)."""
    from kubetrail.store.config import DEFAULT_SORT
    from kubetrail.store.segments import write_parquet

    table = pa.Table.from_batches([sample])
    out = {}
    for label, keys in (("dataset_ns_pod_time", DEFAULT_SORT), ("time_only", ["@timestamp"])):
        sorted_t = table.sort_by([(k, "ascending") for k in keys])
        out[f"segment_bytes_sorted_{label}"] = write_parquet(
            sorted_t, work / f"order-{label}.parquet", 3, 65_536
        )
    return out


def plain_duckdb(plain_dir: Path) -> Any:
    """DuckDB over the unsorted Parquet files as the pipeline wrote them (snappy, no index)."""
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW logs AS SELECT * FROM read_parquet('{plain_dir}/*.parquet', hive_partitioning = false)"
    )
    return con


def _chdb_name(column: str) -> str:
    """chDB reads dotted names of array columns as one Nested structure: store them with underscores."""
    return column.replace("@", "_").replace(".", "_")


def chdb_load(plain_dir: Path, raw_total: int, out: dict[str, Any]) -> Any:
    """The same rows and columns in a chDB MergeTree (None when chDB is absent): sorted like the
    store, a token Bloom index on ``message``, Bloom filters on the pod uid and source IP."""
    try:
        from chdb import session
    except ImportError:
        out["chdb"] = "not installed"
        return None
    names = pq.read_schema(next(plain_dir.glob("*.parquet"))).names
    select = ", ".join(
        f"ifNull(`{n}`, '') AS message" if n == "message" else f"`{n}` AS {_chdb_name(n)}" for n in names
    )
    sess = session.Session(str(plain_dir.parent / "chdb"))  # chdb_open reopens it
    sess.query("CREATE DATABASE IF NOT EXISTS kt")
    t = time.perf_counter()
    sess.query(
        f"""CREATE TABLE kt.logs
            ENGINE = MergeTree
            ORDER BY (event_dataset, kubernetes_namespace, kubernetes_pod_name, _timestamp)
            SETTINGS allow_nullable_key = 1
            AS SELECT {select} FROM file('{plain_dir}/*.parquet', Parquet)"""
    )
    for index in (
        "msg_tokens message TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1",
        "uid_bf kubernetes_pod_uid TYPE bloom_filter GRANULARITY 1",
        "ip_bf source_ip TYPE bloom_filter GRANULARITY 1",
    ):
        sess.query(f"ALTER TABLE kt.logs ADD INDEX {index}")
        sess.query(f"ALTER TABLE kt.logs MATERIALIZE INDEX {index.split()[0]} SETTINGS mutations_sync = 2")
    sess.query("OPTIMIZE TABLE kt.logs FINAL")
    load = time.perf_counter() - t
    bytes_on_disk = int(
        str(
            sess.query("SELECT sum(bytes_on_disk) FROM system.parts WHERE database='kt' AND active", "CSV")
        ).strip()
        or 0
    )
    out["chdb_load_secs"] = round(load, 2)
    out["chdb_bytes"] = bytes_on_disk
    out["chdb_compression_ratio"] = round(raw_total / bytes_on_disk, 2) if bytes_on_disk else 0
    return sess


def chdb_open(path: Path) -> Any:
    """The chDB session ``chdb_load`` built (None when chDB is absent)."""
    try:
        from chdb import session
    except ImportError:
        return None
    return session.Session(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="A small corpus, finishes in under 50 s.")
    parser.add_argument(
        "--corpus",
        choices=["simulator", "generated"],
        default="simulator",
        help="simulator: kubetrail.simulate files parsed by the server's Parsing; generated: numpy corpus.",
    )
    parser.add_argument("--hours", type=float, help="Simulator corpus: simulated hours (mid-size runs).")
    parser.add_argument("--nodes", type=int, help="Simulator corpus: number of nodes (mid-size runs).")
    parser.add_argument("--workdir", type=Path, help="Keep the built store, Parquet and chDB data here.")
    parser.add_argument(
        "--measure-only", action="store_true", help="Only measure queries on the data --workdir kept."
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="Engines to measure (comma-separated): " + ", ".join(ENGINES),
    )
    args = parser.parse_args()
    only = [e for e in args.engines.split(",") if e]
    if set(only) - set(ENGINES):
        parser.error(f"unknown engine in --engines (known: {', '.join(ENGINES)})")
    if args.measure_only and args.workdir is None:
        parser.error("--measure-only needs --workdir")
    started = time.perf_counter()
    result = run(args.quick, args.corpus, args.hours, args.nodes, args.workdir, args.measure_only, only)
    result["wall_secs"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
