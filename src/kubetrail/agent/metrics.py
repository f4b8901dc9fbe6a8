"""Self-observability: Prometheus metrics, ``/healthz`` and structured JSON logs.

The HTTP endpoint is a few lines of asyncio (no web framework in the DaemonSet's memory). Every metric
listed here is documented in ``docs/agent.md`` (a test checks it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["JsonFormatter", "Metrics", "serve_http", "setup_logging"]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "kubetrail_agent_"
        self.bytes_read = Counter(p + "bytes_read", "Bytes read from sources.", ["source"], registry=r)
        self.bytes_shipped = Counter(p + "bytes_shipped", "Raw bytes acknowledged by the server.", registry=r)
        self.bytes_sent_compressed = Counter(
            p + "bytes_sent_compressed", "Request body bytes sent.", registry=r
        )
        self.chunks_shipped = Counter(p + "chunks_shipped", "Chunks acknowledged by the server.", registry=r)
        self.requests = Counter(
            p + "requests", "Requests by HTTP status (or 'error').", ["status"], registry=r
        )
        self.retries = Counter(p + "retries", "Requests retried.", ["reason"], registry=r)
        self.rejected_chunks = Counter(p + "rejected_chunks", "Chunks given up after 400s.", registry=r)
        self.rate_limited_lines = Counter(
            p + "rate_limited_lines", "Lines dropped by rate limits.", registry=r
        )
        self.excluded_bytes = Counter(
            p + "excluded_bytes", "Bytes skipped by exclude annotations.", registry=r
        )
        self.long_lines = Counter(
            p + "long_lines", "Reads cut without a newline (over-long lines).", registry=r
        )
        self.rotations = Counter(p + "rotations", "Rotations seen.", ["kind"], registry=r)
        self.unrecovered_truncations = Counter(
            p + "unrecovered_truncations", "Truncations without a rotated copy.", registry=r
        )
        self.file_errors = Counter(p + "file_errors", "Files that could not be read.", ["reason"], registry=r)
        self.checkpoint_errors = Counter(p + "checkpoint_errors", "Failed checkpoint writes.", registry=r)
        self.checkpoint_age = Gauge(
            p + "checkpoint_age_seconds", "Since the last checkpoint save.", registry=r
        )
        self.files_open = Gauge(p + "files_open", "Files being tailed.", registry=r)
        self.inflight_bytes = Gauge(p + "inflight_bytes", "Read but not yet acknowledged bytes.", registry=r)
        self.bytes_at_risk = Gauge(
            p + "bytes_at_risk", "Unshipped bytes in rotated files (lost if rotated away).", registry=r
        )
        self.server_up = Gauge(p + "server_up", "1 when the last request reached the server.", registry=r)
        self.file_lag = Gauge(
            p + "file_lag_bytes", "Bytes of a file not yet acknowledged.", ["path"], registry=r
        )
        self.journald_spool_bytes = Gauge(
            p + "journald_spool_bytes", "Bytes in the journald spool.", registry=r
        )
        self.kube_metadata = Gauge(
            p + "kube_metadata", "1 with Kubernetes API metadata, 0 path only.", registry=r
        )
        self.heartbeat = time.monotonic()

    def set_lag(self, lag: dict[str, int]) -> None:
        self.file_lag.clear()
        for path, value in lag.items():
            self.file_lag.labels(path=path).set(value)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


async def serve_http(
    host: str, port: int, metrics: Metrics, healthy: Callable[[], tuple[bool, str]]
) -> asyncio.Server:
    """``GET /metrics`` and ``GET /healthz`` on a tiny asyncio server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1].decode("latin-1") if b" " in request else "/"
            if path.startswith("/metrics"):
                status, ctype, body = "200 OK", "text/plain; version=0.0.4", metrics.render()
            elif path.startswith("/healthz"):
                ok, why = healthy()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps({"ok": ok, "detail": why}).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                doc[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("kubetrail")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
