"""Store benchmark: ingest, bytes on disk, needle search and aggregations, side by side with chDB
(ClickHouse MergeTree + tokenbf index, in-process) and plain DuckDB over unsorted Parquet.

    python benchmarks/store.py --quick      # 400k events, < 50 s
    python benchmarks/store.py              # 50M events (>= 10 GB raw), takes long

The corpus is generated in bulk with numpy (no per-event Python): 24 h of container lines
(HTTP access logs, app logs with request ids and latencies, Java-style errors), node logs and
kube-apiserver audit events (the raw line is the audit JSON), with rare needles planted: one
unique token, an attacker IP in a few hundred lines and one pod whose uid is searched.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubetrail.chunk import Chunk, FileIdentity, Origin
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


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    fn()  # warm-up (file metadata, catalog)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 1),
    }


Corpus = Iterator[tuple[pa.RecordBatch, int]]
Queries = dict[str, tuple[str, str, str]]  # name -> (hunting query, DuckDB WHERE, chDB WHERE)


def generated_corpus(quick: bool) -> Corpus:
    """The numpy-generated corpus (high-entropy: random IPs, request ids, latencies)."""
    n_total, chunk = (400_000, 100_000) if quick else (50_000_000, 1_000_000)
    chunks = n_total // chunk
    span = DAY_NS // chunks
    for i in range(chunks):
        yield generate(chunk, seed=i, start_ns=T0 + i * span, span_ns=span, offset=i * chunk)


def _file_chunks(path: Path, node: str, inode: int, source: str, source_path: str) -> Iterator[Chunk]:
    with path.open("rb") as fh:
        offset, carry = 0, b""
        while data := fh.read(1 << 20):
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            origin = Origin(
                node=node, source=source, path=source_path, file=FileIdentity(1, inode, "f"), offset=offset
            )
            yield Chunk(origin, data[:cut])
            offset += cut


def simulator_corpus(
    quick: bool, workdir: Path, hours: float | None = None, nodes: int | None = None
) -> Corpus:
    """``kubetrail.simulate`` writes a cluster's log files; the server's ``Parsing`` stage parses them.

    Memory stays bounded at any size: files are read in 1 MiB chunks and handed over 200k rows at a time.
    """
    from kubetrail.formats.dispatch import Parsing
    from kubetrail.simulate import SimulationOptions, simulate_batch

    root = workdir / "sim"
    options = SimulationOptions(hours=0.5, nodes=3) if quick else SimulationOptions(hours=24, nodes=13)
    if hours is not None or nodes is not None:
        options = SimulationOptions(hours=hours or options.hours, nodes=nodes or options.nodes)
    simulate_batch(root, options)
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
    parsing = Parsing()
    pending: list[pa.RecordBatch] = []
    rows = raw = 0
    now = datetime.now(UTC)
    for inode, (path, node, source, inner) in enumerate(files, start=1):
        for chunk in _file_chunks(path, node, inode, source, inner):
            raw += len(chunk.data)
            batch = parsing.parse(chunk, now)
            if batch.num_rows:
                pending.append(batch)
                rows += batch.num_rows
            if rows >= 200_000:
                yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0], raw
                pending, rows, raw = [], 0, 0
    last = parsing.flush(now, force=True)
    if last.num_rows:
        pending.append(last)
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0], raw
    shutil.rmtree(root, ignore_errors=True)


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
            f"pod_uid = '{uid}'",
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
            f"pod_uid = '{uid}'",
        ),
    }


def _timed_into(out: dict[str, Any], prefix: str, fn: Callable[[], Any], repeat: int) -> None:
    out.update({f"{prefix}_{k}": v for k, v in timed(fn, repeat).items()})


# the columns of the chDB table: a like-for-like needle comparison projects the same ones
CHDB_COLUMNS = (
    "@timestamp, event.dataset, kubernetes.namespace, kubernetes.pod.name, kubernetes.pod.uid, source.ip, "
    "kubernetes.audit.user.username, kubernetes.audit.verb, message"
)


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(
    quick: bool, corpus_name: str, hours: float | None = None, nodes: int | None = None
) -> dict[str, Any]:
    repeat = 3 if quick else 15
    work = Path(tempfile.mkdtemp(prefix="kt-bench-store-"))
    out: dict[str, Any] = {"mode": "quick" if quick else "full", "corpus": corpus_name}
    try:
        store = Store(
            work / "store",
            StoreConfig(
                flush_max_rows=4_000_000,
                flush_max_age_secs=3600,
                delete_grace_secs=0,
                limits=QueryLimits(max_rows=10_000),
                compaction=CompactionConfig(small_segment_bytes=1 << 40, target_segment_bytes=256 << 20),
            ),
        )
        plain_dir = work / "plain"
        plain_dir.mkdir()
        corpus = (
            generated_corpus(quick)
            if corpus_name == "generated"
            else simulator_corpus(quick, work, hours, nodes)
        )
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
            store_compression_ratio_before_compaction=round(raw_total / hot_bytes, 2),
            store_compacted_segments=merged,
            store_compaction_events_per_s=round(events / compact_secs) if merged else 0,
            plain_parquet_bytes=plain_bytes,
            plain_parquet_compression_ratio=round(raw_total / plain_bytes, 2),
        )
        out.update(sort_order_bytes(work, first))
        queries = generated_queries(store) if corpus_name == "generated" else simulator_queries(store)
        for name, (q, _, _) in queries.items():
            out[f"store_{name}_rows"] = store.search(q, limit=10_000).table.num_rows
            _timed_into(out, f"store_{name}", lambda q=q: store.search(q, limit=10_000), repeat)  # type: ignore[misc]
            projected = f"{q} | fields {CHDB_COLUMNS}"
            _timed_into(
                out,
                f"store_{name}_9cols",
                lambda q=projected: store.search(q, limit=10_000),  # type: ignore[misc]
                repeat,
            )
        agg_ns = (
            'SELECT "kubernetes.namespace" AS ns, time_bucket(INTERVAL 1 minute, "@timestamp") AS minute, '
            "count(*) AS n FROM logs GROUP BY ALL"
        )
        agg_users = (
            'SELECT "kubernetes.audit.verb" AS verb, "kubernetes.audit.user.username" AS user, count(*) AS n '
            "FROM logs WHERE \"event.dataset\" = 'audit' GROUP BY ALL ORDER BY n DESC LIMIT 10"
        )
        _timed_into(out, "store_agg_ns_per_minute", lambda: store.sql(agg_ns, limit=10**9), repeat)
        _timed_into(out, "store_agg_top_users_by_verb", lambda: store.sql(agg_users), repeat)
        out.update(duckdb_plain(plain_dir, queries, agg_ns, agg_users, repeat))
        out.update(chdb_side(plain_dir, queries, repeat))
        store.close()
        out["peak_rss_mb"] = peak_rss_mb()
    finally:
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


def duckdb_plain(
    plain_dir: Path, queries: Queries, agg_ns: str, agg_users: str, repeat: int
) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW logs AS SELECT * FROM read_parquet('{plain_dir}/*.parquet', hive_partitioning = false)"
    )
    out: dict[str, Any] = {}
    for name, (_, where, _) in queries.items():
        sql = f"SELECT * FROM logs WHERE {where} LIMIT 10000"
        out[f"duckdb_plain_{name}_rows"] = len(con.sql(sql).fetchall())
        out.update(
            {
                f"duckdb_plain_{name}_{k}": v
                for k, v in timed(lambda sql=sql: con.sql(sql).fetchall(), repeat).items()
            }
        )
    out.update(
        {
            f"duckdb_plain_agg_ns_per_minute_{k}": v
            for k, v in timed(lambda: con.sql(agg_ns).fetchall(), repeat).items()
        }
    )
    out.update(
        {
            f"duckdb_plain_agg_top_users_by_verb_{k}": v
            for k, v in timed(lambda: con.sql(agg_users).fetchall(), repeat).items()
        }
    )
    con.close()
    return out


def chdb_side(plain_dir: Path, queries: Queries, repeat: int) -> dict[str, Any]:
    try:
        from chdb import session
    except ImportError:
        return {"chdb": "not installed"}
    sess = session.Session(str(plain_dir.parent / "chdb"))
    sess.query("CREATE DATABASE IF NOT EXISTS kt")
    sess.query(
        """CREATE TABLE kt.logs (
            ts DateTime64(9, 'UTC'), dataset LowCardinality(String),
            namespace LowCardinality(String), pod LowCardinality(String), pod_uid String,
            source_ip String, username String, verb LowCardinality(String),
            message String,
            INDEX msg_tokens message TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1,
            INDEX uid_bf pod_uid TYPE bloom_filter GRANULARITY 1
        ) ENGINE = MergeTree ORDER BY (dataset, namespace, pod, ts)"""
    )
    t = time.perf_counter()
    sess.query(
        f"""INSERT INTO kt.logs SELECT `@timestamp`, ifNull(`event.dataset`, ''),
            ifNull(`kubernetes.namespace`, ''),
            ifNull(`kubernetes.pod.name`, ''), ifNull(`kubernetes.pod.uid`, ''), ifNull(`source.ip`, ''),
            ifNull(`kubernetes.audit.user.username`, ''), ifNull(`kubernetes.audit.verb`, ''),
            ifNull(message, '')
            FROM file('{plain_dir}/*.parquet', Parquet)"""
    )
    load = time.perf_counter() - t
    sess.query("OPTIMIZE TABLE kt.logs FINAL")
    bytes_on_disk = int(
        str(
            sess.query("SELECT sum(bytes_on_disk) FROM system.parts WHERE database='kt' AND active", "CSV")
        ).strip()
        or 0
    )
    out: dict[str, Any] = {"chdb_load_secs": round(load, 2), "chdb_bytes_subset_columns": bytes_on_disk}
    ch_queries = {
        name: f"SELECT * FROM kt.logs WHERE {where} LIMIT 10000" for name, (_, _, where) in queries.items()
    }
    for name, sql in ch_queries.items():
        out[f"chdb_{name}_rows"] = len(str(sess.query(sql, "CSV")).splitlines())
        out.update(
            {f"chdb_{name}_{k}": v for k, v in timed(lambda sql=sql: sess.query(sql, "CSV"), repeat).items()}
        )
    agg_ns = "SELECT namespace, toStartOfMinute(ts) m, count() FROM kt.logs GROUP BY namespace, m"
    agg_users = (
        "SELECT verb, username, count() c FROM kt.logs WHERE dataset = 'audit' "
        "GROUP BY verb, username ORDER BY c DESC LIMIT 10"
    )
    out.update(
        {
            f"chdb_agg_ns_per_minute_{k}": v
            for k, v in timed(lambda: sess.query(agg_ns, "CSV"), repeat).items()
        }
    )
    out.update(
        {
            f"chdb_agg_top_users_by_verb_{k}": v
            for k, v in timed(lambda: sess.query(agg_users, "CSV"), repeat).items()
        }
    )
    sess.close()
    return out


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
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.quick, args.corpus, args.hours, args.nodes)
    result["wall_secs"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
