"""The processing pipeline: WAL record -> decode -> parse -> transforms -> store (+ outputs).

Receivers call ``submit``: it reserves queue bytes (backpressure), appends the raw bytes to the WAL,
queues the record and returns once the WAL has fsynced it — that is the acknowledgement. One consumer
task takes queued records in sequence order, groups them up to ``max_batch_bytes``, decodes each with
the codec its receiver registered (``register_codec``), runs chunks through the formats' ``Parsing``
and structured records through the receiver's own mapping, then every configured transform in order
(enrich, detect, redact, add_fields, ...), appends to the store and hands the batch to the outputs.

Truncation: every ``flush_interval_secs`` the store is flushed and the WAL checkpointed up to the
newest record processed at least ``state_hold_secs`` ago. The hold lets parser state (a CRI partial
line, an unfinished stack trace) reach the store through the parser's own timeout flush before the
WAL forgets the bytes it came from. After a crash the WAL replays from the checkpoint; the store's
dedup by ``event.id`` (ids derive from origins and WAL positions, both stable) drops what was
already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Chunk
from kubetrail.components import Output, Transform
from kubetrail.errors import KubetrailError
from kubetrail.schema import SCHEMA, conform, empty_batch, event_id_prefix
from kubetrail.server.backpressure import ByteBudget
from kubetrail.server.metrics import ServerMetrics
from kubetrail.server.wal import WalRecord, WriteAheadLog

__all__ = [
    "ChunkParser",
    "Decoded",
    "Pipeline",
    "StoreLike",
    "decode_record",
    "error_batch",
    "register_codec",
]

log = logging.getLogger(__name__)

Decoded: TypeAlias = "list[Chunk] | pa.RecordBatch"
Decoder = Callable[[WalRecord, Any], Decoded]
_CODECS: dict[str, Decoder] = {}


def register_codec(name: str) -> Callable[[Decoder], Decoder]:
    """Register how WAL records whose codec is ``name`` (or ``name+variant``) become chunks or a batch.

    The decoder gets the record and the in-memory ``hint`` the receiver passed to ``submit`` (its
    already-decoded form; ``None`` on replay, when it must decode ``record.data`` again).
    """

    def decorate(fn: Decoder) -> Decoder:
        _CODECS[name] = fn
        return fn

    return decorate


def decode_record(record: WalRecord, hint: Any = None) -> Decoded:
    name = record.codec.split("+", 1)[0]
    try:
        decoder = _CODECS[name]
    except KeyError:
        from kubetrail.components import load_builtin_components

        load_builtin_components()  # receivers register their codecs on import
        if name not in _CODECS:
            raise KubetrailError(f"no decoder for WAL codec {record.codec!r}", seq=record.seq) from None
        decoder = _CODECS[name]
    return decoder(record, hint)


def error_batch(record: WalRecord, code: str, message: str) -> pa.RecordBatch:
    """One flagged event standing for a WAL record no stage could read (never dropped silently)."""
    preview = record.data[:2048].decode("utf-8", "replace")
    cols = {
        "event.id": pa.array([f"{event_id_prefix('wal', record.source, record.seq)}-0"]),
        "event.dataset": pa.array(["internal"]),
        "event.module": pa.array([record.codec]),
        "event.parse_error": pa.array([code]),
        "error.message": pa.array([message[:4096]]),
        "message": pa.array([preview]),
        "@timestamp": pa.array([datetime.now(UTC)], type=SCHEMA.field("@timestamp").type),
    }
    return conform(cols, 1)


class ChunkParser(Protocol):
    """What the formats' ``Parsing`` offers: chunks in, full-schema batches out, state per stream."""

    def parse(self, chunk: Chunk, now: datetime) -> pa.RecordBatch: ...

    def flush(self, now: datetime, force: bool = False) -> pa.RecordBatch: ...


class StoreLike(Protocol):
    def append(self, batch: pa.RecordBatch) -> Any: ...

    def flush(self) -> Any: ...

    def close(self) -> Any: ...


@dataclass
class _Item:
    record: WalRecord
    hint: Any
    durable: asyncio.Future[int] | None  # None: replayed, already durable
    nbytes: int
    enqueued: float = field(default_factory=time.monotonic)


class Pipeline:
    def __init__(
        self,
        wal: WriteAheadLog,
        parser: ChunkParser,
        store: StoreLike,
        *,
        transforms: Sequence[Transform[Any]] = (),
        outputs: Sequence[Output[Any]] = (),
        budget: ByteBudget | None = None,
        metrics: ServerMetrics | None = None,
        cluster_name: str = "kubernetes",
        flush_interval_secs: float = 2.0,
        state_hold_secs: float = 10.0,
        max_batch_bytes: int = 8 << 20,
        data_dir: Path | None = None,
    ) -> None:
        self.wal = wal
        self.parser = parser
        self.store = store
        self.transforms = list(transforms)
        for transform in self.transforms:  # transforms that keep files (detect's alert store)
            bind = getattr(transform, "bind_data_dir", None)
            if data_dir is not None and callable(bind):
                bind(data_dir)
        self.outputs = list(outputs)
        self.budget = budget or ByteBudget(256 << 20)
        self.metrics = metrics or ServerMetrics()
        self.cluster_name = cluster_name
        self.flush_interval_secs = flush_interval_secs
        self.state_hold_secs = state_hold_secs
        self.max_batch_bytes = max_batch_bytes
        self.processed_seq = wal.checkpoint_seq
        self.stored_events = 0
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._processed_at: deque[tuple[float, int]] = deque()
        self._last_flush = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._store_failed = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- the receivers' side --------------------------------------------------------------------

    async def submit(
        self, source: str, codec: str, data: bytes, hint: Any = None, *, wait: bool = False, cost: int = 0
    ) -> int:
        """Make ``data`` durable and queue it; returns its WAL seq once fsynced (= acknowledge now).

        ``wait=False`` raises ``Backpressure`` when the queue is full (HTTP: 429); ``wait=True`` waits
        for room (streams: stop reading, delay the ack).
        """
        durable = await self.enqueue(source, codec, data, hint, wait=wait, cost=cost)
        return await durable

    async def enqueue(
        self, source: str, codec: str, data: bytes, hint: Any = None, *, wait: bool = False, cost: int = 0
    ) -> asyncio.Future[int]:
        """Like ``submit`` but returns at once with a future that resolves when the record is durable.

        Stream receivers use it to keep reading while earlier frames are being fsynced; they send
        each acknowledgement when its future resolves (the order of sequence numbers). ``cost`` is
        the memory the record holds until stored when larger than ``data`` (a decompressed hint).
        """
        n = max(cost, len(data))  # the hint (decoded form) may be larger than the bytes
        if wait:
            if not self._fits(n):
                self.metrics.backpressure.labels(source, "paused").inc()
            await self.budget.reserve(n)
        else:
            try:
                self.budget.try_reserve(n)
            except KubetrailError:
                self.metrics.backpressure.labels(source, "rejected").inc()
                raise
        try:
            seq, durable = self.wal.append(source, codec, data)
        except BaseException:
            self.budget.release(n)
            raise
        self._idle.clear()
        self._queue.append(_Item(WalRecord(seq, source, codec, data), hint, durable, n))
        self._wakeup.set()
        self.metrics.queue_bytes.set(self.budget.used)
        self.metrics.wal_appends.inc()
        self.metrics.received_bytes.labels(source).inc(len(data))
        started = time.perf_counter()
        durable.add_done_callback(
            lambda _f: self.metrics.wal_ack_latency.observe(time.perf_counter() - started)
        )
        return durable

    def _fits(self, n: int) -> bool:
        return self.budget.used == 0 or self.budget.used + n <= self.budget.capacity

    # -- replay and the consumer ----------------------------------------------------------------

    async def replay(self) -> int:
        """Feed the WAL's records after the checkpoint through the pipeline; returns how many."""
        count = 0
        queued = 0
        group_bytes = max(1, min(self.max_batch_bytes, self.budget.capacity // 2))
        for record in self.wal.replay():
            if queued and queued + len(record.data) > group_bytes and self._task is None:
                await self._process_available()  # keep the replay within the budget
                queued = 0
            await self.budget.reserve(len(record.data))
            self._idle.clear()
            self._queue.append(_Item(record, None, None, len(record.data)))
            queued += len(record.data)
            count += 1
            self.metrics.replayed.inc()
        if self._task is None:
            await self._process_available()
        return count

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kubetrail-pipeline")

    async def _run(self) -> None:
        while not self._stopping:
            if not self._queue:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.flush_interval_secs)
            await self._process_available()
            if time.monotonic() - self._last_flush >= self.flush_interval_secs:
                await self._flush_and_checkpoint(final=False)

    async def _process_available(self) -> None:
        while self._queue:
            group: list[_Item] = []
            size = 0
            while self._queue and (not group or size < self.max_batch_bytes):
                item = self._queue.popleft()
                group.append(item)
                size += item.nbytes
            await self._process_group(group)
        if not self._queue:
            self._idle.set()

    async def _process_group(self, group: list[_Item]) -> None:
        ready: list[_Item] = []
        for item in group:
            if item.durable is not None:
                try:
                    await asyncio.shield(item.durable)
                except Exception:  # the WAL write failed: the sender got an error, nothing to store
                    self.budget.release(item.nbytes)
                    continue
            ready.append(item)
        if ready:
            try:
                batch = await asyncio.to_thread(self._transform, ready)
            except Exception:  # a stage failed on the group as a whole: isolate the record(s) at fault
                log.exception("pipeline failed on a group of %d records; retrying one by one", len(ready))
                batch = await asyncio.to_thread(self._transform_each, ready)
            if batch.num_rows:
                if not await self._append_with_retry(batch):
                    return  # stopping while the store fails: the records stay in the WAL (no checkpoint)
                self.stored_events += batch.num_rows
                self.metrics.events.labels("store").inc(batch.num_rows)
                await self._write_outputs(batch)
            self.processed_seq = max(self.processed_seq, ready[-1].record.seq)
            self._processed_at.append((time.monotonic(), self.processed_seq))
            for item in ready:
                self.budget.release(item.nbytes)
        self.metrics.queue_bytes.set(self.budget.used)

    async def _append_with_retry(self, batch: pa.RecordBatch) -> bool:
        """Append to the store, retrying with backoff while it fails (disk full, I/O error). The WAL
        holds the records meanwhile and is not checkpointed past them; senders see backpressure."""
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self.store.append, batch)
                return True
            except Exception as exc:
                self.metrics.pipeline_errors.labels("store", getattr(exc, "code", "KT-STORE")).inc()
                log.error("store append failed (%s); retrying in %.1fs", exc, delay)
                if self._stopping:
                    self._store_failed = True
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _transform_each(self, items: list[_Item]) -> pa.RecordBatch:
        batches = []
        for item in items:
            try:
                batches.append(self._transform([item]))
            except Exception as exc:
                self.metrics.pipeline_errors.labels("pipeline", getattr(exc, "code", "KT-ERROR")).inc()
                batches.append(
                    self._finish(
                        [error_batch(item.record, "KT-PIPELINE", f"{type(exc).__name__}: {exc}")],
                        datetime.now(UTC),
                    )
                )
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return empty_batch()
        return pa.Table.from_batches(batches, schema=SCHEMA).combine_chunks().to_batches()[0]

    def _transform(self, items: list[_Item]) -> pa.RecordBatch:
        now = datetime.now(UTC)
        batches: list[pa.RecordBatch] = []
        for item in items:
            try:
                decoded = decode_record(item.record, item.hint)
                if isinstance(decoded, pa.RecordBatch):
                    batches.append(decoded)
                else:
                    batches.extend(self.parser.parse(chunk, now) for chunk in decoded)
            except Exception as exc:  # a record no decoder/parser can read is stored flagged
                code = getattr(exc, "code", "KT-PROTO")
                self.metrics.pipeline_errors.labels("parse", code).inc()
                log.warning("WAL record %d (%s) unreadable: %s", item.record.seq, item.record.codec, exc)
                batches.append(error_batch(item.record, code, f"{type(exc).__name__}: {exc}"))
        batches.append(self.parser.flush(now))
        return self._finish([b for b in batches if b.num_rows], now)

    def _finish(self, batches: list[pa.RecordBatch], now: datetime) -> pa.RecordBatch:
        if not batches:
            return empty_batch()
        table = pa.Table.from_batches(batches, schema=SCHEMA).combine_chunks()
        batch = table.to_batches()[0] if table.num_rows else empty_batch()
        batch = self._fill_defaults(batch, now)
        self.metrics.events.labels("parse").inc(batch.num_rows)
        errors = batch.column(SCHEMA.get_field_index("event.parse_error"))
        self.metrics.parse_errors.inc(batch.num_rows - errors.null_count)
        for transform in self.transforms:
            try:
                batch = transform.transform(batch)
            except Exception as exc:
                # a failing enrichment/detection must not lose the events: store them untransformed
                self.metrics.pipeline_errors.labels(transform.name, getattr(exc, "code", "KT-ERROR")).inc()
                log.exception("transform %s failed; events stored without it", transform.name)
            self.metrics.events.labels(transform.name).inc(batch.num_rows)
        return batch

    def _fill_defaults(self, batch: pa.RecordBatch, now: datetime) -> pa.RecordBatch:
        n = batch.num_rows
        for name, value in (
            ("orchestrator.cluster.name", pa.scalar(self.cluster_name)),
            ("event.ingested", pa.scalar(now, type=SCHEMA.field("event.ingested").type)),
        ):
            i = SCHEMA.get_field_index(name)
            col = batch.column(i)
            if n and col.null_count:
                batch = batch.set_column(i, SCHEMA.field(i), pc.fill_null(col, value))
        return batch

    async def _write_outputs(self, batch: pa.RecordBatch) -> None:
        for output in self.outputs:
            try:
                await output.write(batch)
            except Exception as exc:
                self.metrics.pipeline_errors.labels(output.name, getattr(exc, "code", "KT-ERROR")).inc()
                log.exception("output %s failed", output.name)

    async def _flush_and_checkpoint(self, final: bool) -> None:
        self._last_flush = time.monotonic()
        if final:
            batch = await asyncio.to_thread(self._final_parser_flush)
            if batch.num_rows:
                await asyncio.to_thread(self.store.append, batch)
                self.stored_events += batch.num_rows
                await self._write_outputs(batch)
            target = self.processed_seq
        else:
            horizon = time.monotonic() - self.state_hold_secs
            target = self.wal.checkpoint_seq
            while self._processed_at and self._processed_at[0][0] <= horizon:
                target = self._processed_at.popleft()[1]
        try:
            await asyncio.to_thread(self.store.flush)
        except Exception as exc:  # not durable: no checkpoint; the next interval tries again
            self.metrics.pipeline_errors.labels("store_flush", getattr(exc, "code", "KT-STORE")).inc()
            log.error("store flush failed (%s): the WAL is not truncated", exc)
            return
        if self._store_failed:
            log.error(
                "the store failed: the WAL keeps everything after seq %d for replay", self.wal.checkpoint_seq
            )
            return
        if target > self.wal.checkpoint_seq:
            await asyncio.to_thread(self.wal.checkpoint, target)
        self.metrics.wal_checkpoint.set(self.wal.checkpoint_seq)
        self.metrics.wal_segments.set(self.wal.segment_count)
        self.metrics.wal_fsyncs.set(self.wal.fsyncs)

    def _final_parser_flush(self) -> pa.RecordBatch:
        now = datetime.now(UTC)
        flushed = self.parser.flush(now, force=True)
        return self._finish([flushed] if flushed.num_rows else [], now)

    async def wait_idle(self) -> None:
        """Until everything queued so far is processed (tests, shutdown)."""
        await self._idle.wait()

    async def flush(self) -> None:
        """Process what is queued, flush the store and checkpoint everything processed."""
        await self._process_available()
        await self._flush_and_checkpoint(final=True)

    async def stop(self) -> None:
        """Drain: process everything queued, flush parsers and store, checkpoint, close the store."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task  # finishes the group in hand; never cancelled mid-group
            self._task = None
        await self.wal.drain()
        await self.flush()
