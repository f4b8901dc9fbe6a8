"""Shipping: batches bounded by bytes and time, compressed, sent over HTTPS until acknowledged.

* A batch closes at ``max_batch_bytes`` raw bytes or ``flush_interval_secs`` after its first chunk.
* At most ``max_concurrent_requests`` requests are in flight; bytes read but not acknowledged are
  bounded by ``max_inflight_bytes`` (``budget_open`` turns False and the tailer stops reading: while the
  server is away the files on disk are the buffer, not the agent's memory).
* Retries: exponential backoff with full jitter; ``429``/``503`` honour ``Retry-After``; ``413`` splits
  the batch (a single chunk is split at a line boundary); ``400`` is a bug on one side: logged loudly,
  retried ``max_bad_request_attempts`` times, then given up and counted (never retried forever).
* Resends reuse the batch id and the chunks' origins, so the server's dedup by ``event.id`` makes them
  harmless; the tailer's checkpoint moves only when a chunk's :class:`Pending` is acknowledged.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kubetrail.agent.config import AgentConfig
from kubetrail.agent.http import HttpClient, HttpError, HttpResponse
from kubetrail.agent.metrics import Metrics
from kubetrail.agent.tailer import FileTail, Pending
from kubetrail.chunk import Chunk
from kubetrail.receivers.agent_protocol import BATCH_ID_HEADER, CONTENT_TYPE, PATH, PROTOCOL_VERSION

__all__ = ["Shipper", "parse_retry_after"]

log = logging.getLogger("kubetrail.agent.shipper")

Entry = tuple[Chunk, Pending, "FileTail | None"]


def parse_retry_after(value: str | None, default: float) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at 5 minutes."""
    if not value:
        return default
    value = value.strip()
    try:
        return min(300.0, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return min(300.0, max(0.0, when.timestamp() - time.time()))


def split_entry(entry: Entry) -> list[Entry]:
    """Split one chunk in two at a line boundary near its middle (for 413).

    The first half gets a zero-size stand-in :class:`Pending`; the real one rides on the second half,
    which is sent after the first, so the checkpoint cannot pass bytes that were not acknowledged."""
    chunk, pending, tail = entry
    data = chunk.data
    mid = data.find(b"\n", len(data) // 2)
    if mid < 0 or mid + 1 >= len(data):
        mid = data.rfind(b"\n", 0, len(data) // 2)
    if mid < 0:
        return [entry]
    cut = mid + 1
    first = Chunk(chunk.origin, data[:cut])
    second = Chunk(replace(chunk.origin, offset=chunk.origin.offset + cut), data[cut:])
    return [(first, Pending(chunk.origin.offset + cut, 0), tail), (second, pending, tail)]


class Shipper:
    def __init__(self, cfg: AgentConfig, metrics: Metrics, on_ack: Callable[[FileTail], None]) -> None:
        self.cfg = cfg
        self.bcfg = cfg.batch
        self.metrics = metrics
        self.on_ack = on_ack
        self.agent_id = f"{cfg.node_name}-{os.getpid():x}{int(time.time() * 1000):x}"
        self._seq = itertools.count(1)
        self._batch: list[Entry] = []
        self._batch_bytes = 0
        self._batch_started = 0.0
        self.inflight_bytes = 0
        self._sem = asyncio.Semaphore(self.bcfg.max_concurrent_requests)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: HttpClient | None = None
        self._zstd: Any = None
        self.server_up = False
        self.unreachable_since: float | None = None  # set by a failed connection, cleared by any answer
        self.last_success = 0.0
        self.resent_batches = 0
        self._encoding = {"zstd": "zstd", "lz4": "lz4", "none": "identity"}[self.bcfg.compression]
        self.url = cfg.server.url.rstrip("/") + PATH

    # ------------------------------------------------------------------ batching
    def budget_open(self) -> bool:
        return self.inflight_bytes < self.bcfg.max_inflight_bytes

    def add(self, chunk: Chunk, pending: Pending, tail: FileTail | None) -> None:
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append((chunk, pending, tail))
        self._batch_bytes += len(chunk.data)
        self.inflight_bytes += pending.size
        self.metrics.inflight_bytes.set(self.inflight_bytes)
        if self._batch_bytes >= self.bcfg.max_batch_bytes:
            self.flush()

    def flush_due(self) -> None:
        if self._batch and time.monotonic() - self._batch_started >= self.bcfg.flush_interval_secs:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> bool:
        """Flush and wait for every request to finish (shutdown)."""
        self.flush()
        if not self._tasks:
            return True
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        return not pending

    # ------------------------------------------------------------------ HTTP
    def _token(self) -> str | None:
        if self.cfg.server.token_file is not None:
            try:
                return self.cfg.server.token_file.read_text().strip()
            except OSError as exc:
                log.error("cannot read token file: %s", exc)
        return self.cfg.server.token

    def _make_client(self) -> HttpClient:
        server = self.cfg.server
        ctx = None
        if self.url.startswith("https"):
            ctx = ssl.create_default_context(cafile=str(server.ca_file) if server.ca_file else None)
            if server.client_cert_file is not None:
                ctx.load_cert_chain(
                    str(server.client_cert_file),
                    str(server.client_key_file) if server.client_key_file else None,
                )
        return HttpClient(self.url, ctx, server.timeout_secs, self.bcfg.max_concurrent_requests)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()

    def _backoff(self, attempt: int) -> float:
        cap = min(self.bcfg.max_backoff_secs, self.bcfg.initial_backoff_secs * (2 ** min(attempt, 20)))
        return random.uniform(cap / 2, cap)

    def _encode(
        self, batch: list[Entry], batch_id: str, token: str | None
    ) -> tuple[list[bytes], dict[str, str]]:
        """Body pieces (compressed when configured) and headers of one request."""
        pieces = encode_pieces(self.cfg.node_name, [e[0] for e in batch])
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Content-Encoding": self._encoding,
            BATCH_ID_HEADER: batch_id,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if self._encoding == "zstd":
            if self._zstd is None:
                import zstandard

                self._zstd = zstandard.ZstdCompressor(level=self.bcfg.zstd_level)
            cobj = self._zstd.compressobj(size=sum(len(p) for p in pieces))
            out = [cobj.compress(p) for p in pieces]
            out.append(cobj.flush())
            return [b"".join(out)], headers
        if self._encoding == "lz4":
            import lz4.frame

            lz = lz4.frame.LZ4FrameCompressor()
            out = [lz.begin(sum(len(p) for p in pieces))] + [lz.compress(p) for p in pieces] + [lz.flush()]
            return [b"".join(out)], headers
        return pieces, headers

    async def _send(self, batch: list[Entry]) -> None:
        async with self._sem:
            await self._send_locked(batch)

    async def _send_locked(self, batch: list[Entry]) -> None:
        batch_id = f"{self.agent_id}:{next(self._seq)}"
        attempt = 0
        bad_requests = 0
        token = self._token()
        body, headers = self._encode(batch, batch_id, token)
        while True:
            if self._client is None:
                self._client = self._make_client()
            delay: float | None = None
            reason = ""
            try:
                response = await self._client.post(body, headers)
                status = response.status
            except (HttpError, OSError) as exc:  # network, TLS, timeout: all retried
                status = 0
                reason = type(exc).__name__
                if attempt == 0 or attempt % 10 == 0:
                    log.warning(
                        "server unreachable: %s", exc, extra={"batch_id": batch_id, "attempt": attempt}
                    )
            self.metrics.requests.labels(status=str(status or "error")).inc()
            self.server_up = status != 0
            if status == 0:
                self.unreachable_since = self.unreachable_since or time.monotonic()
            else:
                self.unreachable_since = None
            self.metrics.server_up.set(1 if self.server_up else 0)
            if status == 200:
                accepted = _accepted(response)
                if accepted == len(batch):
                    self.last_success = time.monotonic()
                    self.metrics.bytes_sent_compressed.inc(sum(len(p) for p in body))
                    self._acknowledge(batch)
                    return
                reason = "partial"
                log.error("server accepted %s of %s chunks; resending", accepted, len(batch))
            elif status in (429, 503):
                reason = str(status)
                delay = parse_retry_after(response.headers.get("retry-after"), self._backoff(attempt))
                delay += random.uniform(0, delay * 0.1)
            elif status == 413:
                self.metrics.retries.labels(reason="413").inc()
                await self._split_and_send(batch)
                return
            elif status in (401, 403):
                reason = str(status)
                log.error("server refused the token (%s); check server.token_file", status)
                token = self._token()
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
            elif 400 <= status < 500:
                bad_requests += 1
                reason = str(status)
                log.error(
                    "server rejected a batch: %s %s",
                    status,
                    response.text[:500],
                    extra={"batch_id": batch_id, "attempt": bad_requests},
                )
                if bad_requests >= self.bcfg.max_bad_request_attempts:
                    log.error(
                        "giving up a rejected batch of %s chunks", len(batch), extra={"batch_id": batch_id}
                    )
                    self.metrics.rejected_chunks.inc(len(batch))
                    self._acknowledge(batch, shipped=False)
                    return
            elif status:
                reason = str(status)
            attempt += 1
            self.resent_batches += 1
            self.metrics.retries.labels(reason=reason or "error").inc()
            await asyncio.sleep(self._backoff(attempt) if delay is None else delay)

    async def _split_and_send(self, batch: list[Entry]) -> None:
        if len(batch) == 1:
            parts = split_entry(batch[0])
            if len(parts) == 1:
                log.error("server refused a single line as too large; giving up that chunk")
                self.metrics.rejected_chunks.inc()
                self._acknowledge(batch, shipped=False)
                return
            await self._send_locked([parts[0]])
            await self._send_locked([parts[1]])
            return
        half = len(batch) // 2
        await self._send_locked(batch[:half])
        await self._send_locked(batch[half:])

    def _acknowledge(self, batch: list[Entry], shipped: bool = True) -> None:
        nbytes = 0
        for chunk, pending, tail in batch:
            nbytes += len(chunk.data)
            if pending.done:
                continue
            pending.done = True
            self.inflight_bytes -= pending.size
            if tail is not None:
                tail.advance()
                self.on_ack(tail)
        if shipped:
            self.metrics.bytes_shipped.inc(nbytes)
            self.metrics.chunks_shipped.inc(len(batch))
        self.metrics.inflight_bytes.set(self.inflight_bytes)


def encode_pieces(agent: str, chunks: list[Chunk]) -> list[bytes]:
    """The request body of ``agent_protocol.encode_request`` (identity), as pieces, without copying data.

    Byte-for-byte the same as ``encode_request(...)[0]`` (a test checks it); the chunk bytes are passed
    through as they are, so the body is never assembled in memory before compression or sending.
    """
    import msgpack

    packer = msgpack.Packer(use_bin_type=True)
    head = (
        b"\x83" + packer.pack("v") + packer.pack(PROTOCOL_VERSION) + packer.pack("agent") + packer.pack(agent)
    )
    pieces = [head + packer.pack("chunks") + packer.pack_array_header(len(chunks))]
    for chunk in chunks:
        o = chunk.origin
        ident = o.file
        origin = {
            "node": o.node,
            "source": o.source,
            "path": o.path,
            "file": None
            if ident is None
            else {"dev": ident.dev, "inode": ident.inode, "fingerprint": ident.fingerprint},
            "offset": o.offset,
            "format": o.format,
            "metadata": dict(o.metadata),
            "receiver": o.receiver,
            "batch_id": o.batch_id,
        }
        pieces.append(
            b"\x82"
            + packer.pack("origin")
            + packer.pack(origin)
            + packer.pack("data")
            + _bin_header(len(chunk.data))
        )
        pieces.append(chunk.data)
    return pieces


def _bin_header(size: int) -> bytes:
    """msgpack bin 8/16/32 header (the Packer has no public method for it)."""
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _accepted(response: HttpResponse) -> int:
    try:
        value = json.loads(response.body).get("accepted_chunks")
    except (ValueError, AttributeError):
        return -1
    return value if isinstance(value, int) else -1
