"""What containers print: line generators per workload profile, vectorized per container.

A profile renders ``n`` records at given times in one go: every column (client IP, path, status, ...)
is drawn for all records with one numpy call, then one list comprehension formats the lines. Rare
records become multiline stack traces (Java, Python, Go) or lines longer than 16 KiB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kubetrail.simulate import system, traces
from kubetrail.simulate.cluster import Container
from kubetrail.simulate.pools import hex_ids, pick, stamp, weighted

__all__ = ["PROFILES", "Profile", "Rendered", "big_line", "render"]

Single = Callable[[np.ndarray, np.random.Generator, Container], tuple[list[str], np.ndarray]]
Multi = Callable[[np.ndarray, np.random.Generator, Container], list[str]]


@dataclass
class Rendered:
    """Physical lines of a container stream. ``owner[i]`` is the record line ``i`` belongs to."""

    lines: list[str]
    owner: np.ndarray
    stderr: np.ndarray
    json: np.ndarray  # the sequence id goes in as a JSON key rather than a trailing token


@dataclass(frozen=True)
class Profile:
    single: Single
    json: bool = False
    multiline: Multi | None = None
    multiline_prob: float = 0.0
    multiline_stderr: bool = True


_CLIENTS = [f"10.244.{a}.{b}" for a in range(4) for b in (3, 7, 12, 19, 23, 41, 57, 88)] + [
    "192.168.49.1",
    "172.18.0.1",
    "100.64.12.9",
]
_PATHS = (
    "/",
    "/index.html",
    "/static/js/main.4f8a1c.js",
    "/static/css/app.9b2e.css",
    "/api/v1/products?page=%d",
    "/api/v1/products/%d",
    "/api/v1/cart/%d",
    "/api/v1/orders/%d",
    "/healthz",
    "/metrics",
    "/images/products/%d.webp",
    "/api/v1/search?q=shoes&limit=%d",
    "/favicon.ico",
    "/api/v1/users/%d/profile",
)
_METHODS = ("GET", "GET", "GET", "GET", "POST", "GET", "PUT", "DELETE")
_STATUS = ("200", "304", "301", "404", "500", "502", "201", "204")
_STATUS_W = (80, 6, 2, 5, 0.5, 0.3, 4, 2)
_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "kube-probe/1.31",
    "Prometheus/2.55.1",
    "curl/8.5.0",
    "Go-http-client/1.1",
)
_REFERERS = ("-", "https://shop.example.com/", "https://shop.example.com/cart", "https://www.google.com/")


def _requests(rng: np.random.Generator, n: int) -> list[str]:
    paths = pick(rng, _PATHS, n)
    nums = rng.integers(1, 99999, n).tolist()
    methods = pick(rng, _METHODS, n)
    return [f"{m} {p % k if '%d' in p else p} HTTP/1.1" for m, p, k in zip(methods, paths, nums, strict=True)]


def _nginx(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    t = stamp(ts, "%d/%b/%Y:%H:%M:%S", 0, suffix=" +0000")
    ips, reqs, refs, uas = (
        pick(rng, _CLIENTS, n),
        _requests(rng, n),
        pick(rng, _REFERERS, n),
        pick(rng, _UAS, n),
    )
    status = weighted(rng, _STATUS, _STATUS_W, n)
    size = rng.integers(0, 60000, n).tolist()
    if c.name == "controller":  # ingress-nginx's upstream log format
        rt = (rng.gamma(2.0, 0.02, n)).tolist()
        lines = [
            f'{ip} - - [{tt}] "{r}" {s} {b} "{rf}" "{u}" {len(r) + 180} {x:.3f} '
            f"[shop-frontend-80] [] {c.pod_ip}:80 {b} {x:.3f} {s}"
            for ip, tt, r, s, b, rf, u, x in zip(ips, t, reqs, status, size, refs, uas, rt, strict=True)
        ]
    else:
        lines = [
            f'{ip} - - [{tt}] "{r}" {s} {b} "{rf}" "{u}"'
            for ip, tt, r, s, b, rf, u in zip(ips, t, reqs, status, size, refs, uas, strict=True)
        ]
    stderr = rng.random(n) < 0.03
    idx = np.flatnonzero(stderr)
    if idx.size:
        et = stamp(ts[idx], "%Y/%m/%d %H:%M:%S", 0)
        for j, i in enumerate(idx.tolist()):
            lines[i] = (
                f"{et[j]} [error] 29#29: *{i + 1000} upstream timed out (110: Connection timed out) while "
                f"reading response header from upstream, client: {ips[i]}, server: shop.example.com, "
                f'request: "{reqs[i]}", upstream: "http://10.96.12.4:8080/", host: "shop.example.com"'
            )
    return lines, stderr


_JAVA_MSGS = (
    ("INFO", "c.e.shop.orders.OrderService", "Order %d placed for customer %d, 3 items, total 129.90 EUR"),
    ("INFO", "c.e.shop.orders.OrderController", "GET /api/v1/orders/%d completed in %d ms"),
    ("DEBUG", "c.e.shop.orders.InventoryRepository", "Reserved stock for sku=SKU-%d quantity=%d"),
    ("INFO", "o.s.web.servlet.DispatcherServlet", "Completed initialization in %d ms (request %d)"),
    ("WARN", "c.e.shop.orders.PaymentClient", "Payment gateway slow: %d ms for order %d, retrying"),
    ("INFO", "com.zaxxer.hikari.pool.HikariPool", "HikariPool-1 - Pool stats (total=%d, active=%d, idle=8)"),
)


def _java_head(
    ts: np.ndarray, c: Container, levels: list[str], loggers: list[str], thread: list[int]
) -> list[str]:
    t = stamp(ts, "%Y-%m-%dT%H:%M:%S", 3, suffix="Z")
    return [
        f"{tt} {lv:>5} 1 --- [{c.name}] [nio-8080-exec-{th}] {lg:<40} : "
        for tt, lv, lg, th in zip(t, levels, loggers, thread, strict=True)
    ]


def _java(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    k = rng.integers(0, len(_JAVA_MSGS), n).tolist()
    heads = _java_head(
        ts, c, [_JAVA_MSGS[i][0] for i in k], [_JAVA_MSGS[i][1] for i in k], rng.integers(1, 10, n).tolist()
    )
    a, b = rng.integers(1, 99999, n).tolist(), rng.integers(1, 500, n).tolist()
    lines = [h + (_JAVA_MSGS[i][2] % (x, y)) for h, i, x, y in zip(heads, k, a, b, strict=True)]
    return lines, np.zeros(n, dtype=bool)


def _java_ml(ts: np.ndarray, rng: np.random.Generator, c: Container) -> list[str]:
    head = _java_head(ts, c, ["ERROR"], ["o.a.c.c.C.[.[.[/].[dispatcherServlet]"], [4])[0]
    return traces.java_exception(
        rng, head + "Servlet.service() for servlet [dispatcherServlet] threw exception"
    )


_PY_MSGS = (
    ("info", "payments.api", 'msg="charge created" charge_id=ch_%d amount=%d currency=EUR'),
    (
        "info",
        "payments.api",
        'msg="request completed" method=POST path=/v1/charges status=201 user_id=%d duration_ms=%d',
    ),
    (
        "debug",
        "payments.gateway",
        'msg="gateway call" endpoint=/v1/authorize attempt=1 order_id=%d latency_ms=%d',
    ),
    ("warning", "payments.fraud", 'msg="risk score above threshold" score=0.%d customer_id=%d action=review'),
    ("info", "gunicorn.access", 'msg="10.244.1.7 - - \\"GET /healthz HTTP/1.1\\" 200 %d" worker=%d'),
)


def _python(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    t = stamp(ts, "%Y-%m-%dT%H:%M:%S", 3, suffix="Z")
    k = rng.integers(0, len(_PY_MSGS), n).tolist()
    a, b = rng.integers(1, 99999, n).tolist(), rng.integers(1, 900, n).tolist()
    rid = hex_ids(rng, n, 8)
    lines = [
        f"time={tt} level={_PY_MSGS[i][0]} logger={_PY_MSGS[i][1]} request_id={r} "
        + (_PY_MSGS[i][2] % (x, y))
        for tt, i, r, x, y in zip(t, k, rid, a, b, strict=True)
    ]
    return lines, np.zeros(n, dtype=bool)


def _python_ml(ts: np.ndarray, rng: np.random.Generator, c: Container) -> list[str]:
    t = stamp(ts, "%Y-%m-%dT%H:%M:%S", 3, suffix="Z")[0]
    return traces.python_traceback(rng, f'time={t} level=error logger=payments.api msg="unhandled exception"')


_GO_MSGS = (
    (
        "info",
        "api/cart.go:88",
        "request served",
        '"method":"GET","path":"/v1/cart/%d","status":200,"duration_ms":%d',
    ),
    ("info", "api/cart.go:131", "item added", '"cart_id":%d,"sku":"SKU-%d","quantity":1'),
    ("debug", "store/redis.go:57", "cache hit", '"key":"cart:%d","ttl_s":%d'),
    (
        "warn",
        "store/redis.go:74",
        "slow redis command",
        '"command":"HGETALL","key":"cart:%d","duration_ms":%d',
    ),
    ("error", "api/cart.go:145", "checkout failed", '"cart_id":%d,"error":"orders service returned %d"'),
)


def _go(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    t = stamp(ts, "%Y-%m-%dT%H:%M:%S", 3, suffix="Z")
    k = weighted(rng, [str(i) for i in range(len(_GO_MSGS))], (50, 20, 20, 6, 1), n)
    a, b = rng.integers(1, 99999, n).tolist(), rng.integers(1, 900, n).tolist()
    tid = hex_ids(rng, n, 16)
    lines = []
    for tt, ks, x, y, tr in zip(t, k, a, b, tid, strict=True):
        lv, caller, msg, extra = _GO_MSGS[int(ks)]
        lines.append(
            f'{{"level":"{lv}","ts":"{tt}","caller":"{caller}","msg":"{msg}",'
            f'{extra % (x, y)},"trace_id":"{tr}"}}'
        )
    return lines, np.zeros(n, dtype=bool)


def _go_ml(ts: np.ndarray, rng: np.random.Generator, c: Container) -> list[str]:
    return traces.go_goroutine_dump(rng) if rng.random() < 0.3 else traces.go_panic(rng)


def _node(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    ms = (ts // 1_000_000).tolist()
    a, b = rng.integers(1, 99999, n).tolist(), rng.integers(1, 400, n).tolist()
    st = weighted(rng, ("200", "304", "404", "500"), (90, 5, 4, 1), n)
    lines = [
        f'{{"level":30,"time":{t},"pid":1,"hostname":"{c.pod}","req":{{"id":{x},"method":"GET",'
        f'"url":"/products/{x}","remoteAddress":"::ffff:10.244.1.9"}},"res":{{"statusCode":{s}}},'
        f'"responseTime":{y},"msg":"request completed"}}'
        for t, x, y, s in zip(ms, a, b, st, strict=True)
    ]
    return lines, np.zeros(n, dtype=bool)


_PG = (
    "LOG:  checkpoint starting: time",
    "LOG:  checkpoint complete: wrote %d buffers (0.1%%); 0 "
    "WAL file(s) added, 0 removed, 1 recycled; write=%d.1 s",
    "LOG:  duration: %d.512 ms  statement: SELECT id, status FROM orders WHERE customer_id = %d",
    "LOG:  connection authorized: user=shop database=shop application_name=PostgreSQL JDBC Driver pid=%d/%d",
    'LOG:  automatic vacuum of table "shop.public.order_items": index scans: 1 pages: %d removed, %d remain',
)


def _postgres(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    t = stamp(ts, "%Y-%m-%d %H:%M:%S", 3, suffix=" UTC")
    k = rng.integers(0, len(_PG), n).tolist()
    pid, a, b = (
        rng.integers(100, 9000, n).tolist(),
        rng.integers(1, 999, n).tolist(),
        rng.integers(1, 999, n).tolist(),
    )
    lines = []
    for tt, i, p, x, y in zip(t, k, pid, a, b, strict=True):
        tmpl = _PG[i]
        count = tmpl.count("%d")
        body = tmpl % (x, y) if count == 2 else (tmpl % x if count == 1 else tmpl)
        lines.append(f"{tt} [{p}] {body}")
    return lines, np.ones(n, dtype=bool)  # postgres logs to stderr


def _postgres_ml(ts: np.ndarray, rng: np.random.Generator, c: Container) -> list[str]:
    t = stamp(ts, "%Y-%m-%d %H:%M:%S", 3, suffix=" UTC")[0]
    p = int(rng.integers(100, 9000))
    return [
        f'{t} [{p}] ERROR:  duplicate key value violates unique constraint "orders_pkey"',
        f"{t} [{p}] DETAIL:  Key (id)=({int(rng.integers(1, 99999))}) already exists.",
        f"{t} [{p}] STATEMENT:  INSERT INTO orders (id, customer_id, status) VALUES ($1, $2, $3)",
    ]


_REDIS = (
    "* %d changes in 300 seconds. Saving...",
    "* Background saving started by pid %d",
    "* DB saved on disk",
    "* Fork CoW for RDB: current %d MB, peak %d MB, average 1 MB",
    "* Background saving terminated with success",
)


def _redis(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    t = stamp(ts, "%d %b %Y %H:%M:%S", 3)
    k = rng.integers(0, len(_REDIS), n).tolist()
    a, b = rng.integers(1, 999, n).tolist(), rng.integers(1, 99, n).tolist()
    lines = []
    for tt, i, x, y in zip(t, k, a, b, strict=True):
        tmpl = _REDIS[i]
        count = tmpl.count("%d")
        body = tmpl % (x, y) if count == 2 else (tmpl % x if count == 1 else tmpl)
        lines.append(f"1:M {tt} {body}")
    return lines, np.zeros(n, dtype=bool)


_DNS = (
    "cart.shop.svc.cluster.local.",
    "orders.shop.svc.cluster.local.",
    "shop-db.shop.svc.cluster.local.",
    "redis.shop.svc.cluster.local.",
    "payments-api.payments.svc.cluster.local.",
    "api.stripe.example.",
    "kubernetes.default.svc.cluster.local.",
    "prometheus.monitoring.svc.cluster.local.",
)


def _coredns(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    ips, names = pick(rng, _CLIENTS, n), pick(rng, _DNS, n)
    port, qid = rng.integers(30000, 65000, n).tolist(), rng.integers(1, 65535, n).tolist()
    qt = weighted(rng, ("A", "AAAA", "SRV"), (70, 25, 5), n)
    dur = rng.gamma(2.0, 0.0002, n).tolist()
    lines = [
        f'[INFO] {ip}:{p} - {q} "{t} IN {nm} udp 52 false 512" NOERROR qr,aa,rd 110 {d:.6f}s'
        for ip, p, q, t, nm, d in zip(ips, port, qid, qt, names, dur, strict=True)
    ]
    return lines, np.zeros(n, dtype=bool)


_LOGFMT = (
    ('level=info component=tsdb msg="Head GC completed" caller=head.go:%d duration=%dms', "prometheus"),
    (
        'level=info component="scrape manager" msg="Scrape pool reloaded" caller=manager.go:%d targets=%d',
        "prometheus",
    ),
    (
        'logger=context userId=1 orgId=1 uname=admin level=info msg="Request Completed" method=GET '
        "path=/api/dashboards/uid/%d status=200 remote_addr=10.244.1.9 "
        "time_ms=%d handler=/api/dashboards/uid/:uid",
        "grafana",
    ),
    (
        'level=info collector=netdev msg="scrape finished" caller=collector.go:%d duration_seconds=0.00%d',
        "node-exporter",
    ),
    (
        'level=info collector=filesystem msg="Parsed flag" caller=filesystem_common.go:%d mounts=%d',
        "node-exporter",
    ),
)


def _logfmt(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    t = stamp(ts, "%Y-%m-%dT%H:%M:%S", 3, suffix="Z")
    pool = [tmpl for tmpl, owner in _LOGFMT if owner == c.name] or [tmpl for tmpl, _ in _LOGFMT]
    k = rng.integers(0, len(pool), n).tolist()
    a, b = rng.integers(1, 999, n).tolist(), rng.integers(1, 99, n).tolist()
    lines = [f"ts={tt} " + (pool[i] % (x, y)) for tt, i, x, y in zip(t, k, a, b, strict=True)]
    return lines, np.zeros(n, dtype=bool)


_PLAIN = (
    "INFO  [main] com.example.legacy.BatchJob - processed batch %d in %d ms",
    "INFO  [scheduler-1] com.example.legacy.Sync - synced %d records from upstream (%d skipped)",
    "WARN  [worker-3] com.example.legacy.Mailer - SMTP relay slow, queued %d mails, retry in %d s",
    "INFO  [http-2] com.example.legacy.Web - customer name=Ren\udce9 Dupont id=%d opened invoice %d",
)


def _plain(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    n = len(ts)
    t = stamp(ts, "%Y-%m-%d %H:%M:%S", 3, sep=",")
    k = weighted(rng, ("0", "1", "2", "3"), (50, 30, 15, 1), n)
    a, b = rng.integers(1, 9999, n).tolist(), rng.integers(1, 999, n).tolist()
    lines = [f"[{tt}] " + (_PLAIN[int(i)] % (x, y)) for tt, i, x, y in zip(t, k, a, b, strict=True)]
    return lines, np.zeros(n, dtype=bool)


def _klog(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    return system.klog_lines(ts, rng, c.name, c.pod_ip), np.ones(len(ts), dtype=bool)


def _apiserver(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    return system.apiserver_lines(ts, rng), np.ones(len(ts), dtype=bool)


def _etcd(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    return system.etcd_lines(ts, rng), np.ones(len(ts), dtype=bool)


def _miner(ts: np.ndarray, rng: np.random.Generator, c: Container) -> tuple[list[str], np.ndarray]:
    """xmrig output (only the crypto-miner attack pod runs this profile)."""
    n = len(ts)
    t = stamp(ts, "%Y-%m-%d %H:%M:%S", 3)
    kind = weighted(rng, ("a", "j", "s"), (45, 35, 20), n)
    diff, ms = rng.integers(90000, 200000, n).tolist(), rng.integers(5, 90, n).tolist()
    speed = rng.normal(2300, 40, n).tolist()
    out = []
    for k, (tt, d, m, sp) in enumerate(zip(t, diff, ms, speed, strict=True)):
        if kind[k] == "a":
            out.append(f"[{tt}]  cpu      accepted ({k + 1}/0) diff {d} ({m} ms)")
        elif kind[k] == "j":
            out.append(
                f"[{tt}]  net      new job from pool.supportxmr.com:3333 "
                f"diff {d} algo rx/0 height {3312345 + k}"
            )
        else:
            out.append(
                f"[{tt}]  miner    speed 10s/60s/15m {sp:.1f} {sp - 12:.1f} n/a H/s max {sp + 40:.1f} H/s"
            )
    return out, np.zeros(n, dtype=bool)


PROFILES: dict[str, Profile] = {
    "miner": Profile(_miner),
    "nginx": Profile(_nginx),
    "java": Profile(_java, multiline=_java_ml, multiline_prob=0.004, multiline_stderr=False),
    "python": Profile(_python, multiline=_python_ml, multiline_prob=0.004),
    "go": Profile(_go, json=True, multiline=_go_ml, multiline_prob=0.0008),
    "node": Profile(_node, json=True),
    "postgres": Profile(_postgres, multiline=_postgres_ml, multiline_prob=0.01),
    "redis": Profile(_redis),
    "coredns": Profile(_coredns),
    "logfmt": Profile(_logfmt),
    "plain": Profile(_plain),
    "klog": Profile(_klog),
    "apiserver": Profile(_apiserver),
    "etcd": Profile(_etcd, json=True),
}


def big_line(rng: np.random.Generator, json: bool) -> str:
    """A line longer than 16 KiB whose payload states its own length, so reassembly can be checked."""
    size = int(rng.integers(17_000, 70_000))
    unit = "0123456789abcdefghijklmnopqrstuvwxyz"
    data = (unit * (size // len(unit) + 1))[:size]
    if json:
        return f'{{"level":"debug","msg":"config dump","kt_len":{size},"data":"{data}"}}'
    return f"DEBUG config dump kt_len={size} data={data}"


def render(
    profile: str, ts: np.ndarray, rng: np.random.Generator, c: Container, big_prob: float = 2e-5
) -> Rendered:
    """Render records at times ``ts`` (sorted epoch ns) as physical lines."""
    p = PROFILES[profile]
    n = len(ts)
    lines, stderr = p.single(ts, rng, c)
    json = np.full(n, p.json)
    for i in np.flatnonzero(rng.random(n) < big_prob).tolist():
        lines[i] = big_line(rng, p.json)
    owner = np.arange(n)
    if p.multiline is None or n == 0:
        return Rendered(lines, owner, stderr, json)
    ml = np.flatnonzero(rng.random(n) < p.multiline_prob).tolist()
    if not ml:
        return Rendered(lines, owner, stderr, json)
    out: list[str] = []
    counts = np.ones(n, dtype=np.int64)
    prev = 0
    for i in ml:
        out.extend(lines[prev:i])
        block = p.multiline(ts[i : i + 1], rng, c)
        out.extend(block)
        counts[i] = len(block)
        prev = i + 1
    out.extend(lines[prev:])
    owner = np.repeat(np.arange(n), counts)
    is_ml = np.repeat(np.isin(np.arange(n), ml), counts)
    new_stderr = np.where(is_ml, p.multiline_stderr, stderr[owner])
    new_json = np.where(is_ml, False, json[owner])
    return Rendered(out, owner, new_stderr, new_json)
