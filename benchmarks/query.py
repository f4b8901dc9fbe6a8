"""Query-language benchmark: compile latency and the cost of the SQL it generates.

    python benchmarks/query.py [--quick]

Builds a synthetic Parquet file of N events (2M with --quick, 20M full; zstd, sorted by time,
cached under $TMPDIR), then for each hunting query prints the median wall time of the compiled
SQL over ``read_parquet(...)`` in DuckDB, plus, for free-text terms, the time of a plain
``ILIKE '%term%'`` (substring semantics) for comparison: that difference is what token semantics
(the boundary check that keeps answers consistent with the store's token index) costs. Also the
compile time per query. One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kubetrail.query import compile_query
from kubetrail.schema import SCHEMA, conform

CACHE = Path(tempfile.gettempdir()) / "kubetrail-bench-query"
WORDS = np.array(
    [
        "GET",
        "POST",
        "request",
        "served",
        "in",
        "ms",
        "status",
        "ok",
        "error",
        "timeout",
        "connection",
        "refused",
        "retry",
        "upstream",
        "user",
        "login",
        "failed",
        "cache",
        "miss",
        "hit",
        "pod",
        "started",
        "stopped",
        "volume",
        "mounted",
        "probe",
        "liveness",
        "readiness",
    ]
)


def build(n: int) -> Path:
    path = CACHE / f"events-v2-{n}.parquet"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
    chunk = 1_000_000
    base = np.datetime64("2024-05-01T00:00:00", "ns").astype(np.int64)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        words = WORDS[rng.integers(0, len(WORDS), size=(m, 6))]
        ids = rng.integers(0, 10**9, size=m).astype(str)
        msg = np.char.add(np.char.add(np.char.add(words[:, 0], " "), np.char.add(words[:, 1], " /api/")), ids)
        for k in range(2, 6):
            msg = np.char.add(np.char.add(msg, " "), words[:, k])
        msg[rng.integers(0, m)] = "needle-7f3a9c token found"
        ts = base + np.arange(start, start + m, dtype=np.int64) * (86_400_000_000_000 // n)  # 24 h
        ns = np.array([f"ns-{i}" for i in range(40)])[rng.integers(0, 40, size=m)]
        verbs = np.array(["get", "list", "watch", "create", "update", "delete"])[rng.integers(0, 6, size=m)]
        ips = [[f"10.{a}.{b}.{c}"] for a, b, c in rng.integers(0, 255, size=(m, 3))]
        cols = {
            "@timestamp": pa.array(ts, pa.timestamp("ns", tz="UTC")),
            "message": pa.array(msg.tolist()),
            "kubernetes.namespace": pa.array(ns.tolist()),
            "event.dataset": pa.array(["audit"] * m),
            "kubernetes.audit.verb": pa.array(verbs.tolist()),
            "kubernetes.audit.sourceIPs": pa.array(ips, pa.list_(pa.string())),
            "kubernetes.audit.responseStatus.code": pa.array(rng.choice([200, 201, 401, 403, 404], size=m)),
        }
        writer.write_batch(conform(cols, m), row_group_size=122_880)
    writer.close()
    return path


QUERIES = {
    "rare_token": "needle-7f3a9c",
    "common_word": "timeout",
    "phrase": '"connection refused"',
    "wildcard_text": "retr*",
    "keyword_eq": "namespace:ns-7 verb:create",
    "list_ip": "sourceIPs:10.1.2.*",
    "range_int": "responseStatus.code:[401 TO 403]",
    "time_window": "@timestamp:[2024-05-01T10:00:00Z TO 2024-05-01T11:00:00Z] error",
    "stats_by_ns_minute": "* | timechart span=1m count() by namespace",
    "top_verbs_by_code": "responseStatus.code:>=400 | stats count() by verb, responseStatus.code | head 5",
    "dedup_head": "error | dedup namespace | head 10",
}
SUBSTRING = {"rare_token": "needle-7f3a9c", "common_word": "timeout", "phrase": "connection refused"}


def timed(con: duckdb.DuckDBPyConnection, sql: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 2_000_000 if args.quick else 20_000_000
    path = build(n)
    relation = f"read_parquet('{path}')"
    con = duckdb.connect()
    con.execute("SET threads = 2")
    repeat = 3
    out: dict[str, object] = {"events": n, "parquet_mb": round(path.stat().st_size / 1e6, 1)}
    t = time.perf_counter()
    for _ in range(200):
        for q in QUERIES.values():
            compile_query(q, relation=relation)
    out["compile_us_per_query"] = round((time.perf_counter() - t) / (200 * len(QUERIES)) * 1e6, 1)
    for name, q in QUERIES.items():
        sql = compile_query(q, relation=relation).sql
        out[f"{name}_ms"] = round(timed(con, f"SELECT count(*) FROM ({sql})", repeat) * 1000, 1)
    for name, term in SUBSTRING.items():
        sql = f"SELECT count(*) FROM {relation} WHERE message ILIKE '%{term}%'"
        out[f"{name}_substring_ilike_ms"] = round(timed(con, sql, repeat) * 1000, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
