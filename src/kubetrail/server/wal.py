"""The write-ahead log: what the server acknowledged is on disk before the sender hears "ok".

Receivers append the bytes they received (raw agent bodies, raw forward frames, raw syslog messages)
— parsing happens after the acknowledgement, in the pipeline — so ingest is bound by disk bandwidth,
not by Python. Layout and guarantees:

- The log is a directory of segments ``<first-seq>.wal``; a segment rolls over at ``segment_bytes``.
  Every start opens a fresh segment, so a torn tail is never appended to.
- A record is a 24-byte header (magic, version, body length, CRC-32 of everything after the CRC,
  sequence number, lengths of two names) followed by the receiver name, the codec name and the data.
  A record whose CRC does not match is never replayed.
- ``append`` assigns the sequence number at once and returns a future that resolves after the record
  was written *and fsynced*. Appends that arrive while an fsync runs are written together by the next
  one (group commit): one fsync serves every concurrent request, which is what lets one disk
  acknowledge hundreds of thousands of events per second.
- ``checkpoint(seq)`` records (atomically, fsynced) that the store durably holds every record up to
  ``seq`` and deletes the segments that lie wholly before it. ``replay()`` yields the records after
  the checkpoint — on start, the pipeline feeds them through again; the store's dedup by ``event.id``
  makes a record that was already stored but not yet checkpointed harmless.
- On open a torn record at the end of the newest segment (a crash mid-write: never acknowledged) is
  cut off. A bad record with valid records after it is corruption, not a torn write: it is counted
  in ``corrupt_records``, logged loudly, and reading resynchronises on the next record whose magic
  and CRC check out, so one bad sector costs one record, not the rest of the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubetrail.errors import StorageError

__all__ = ["WalRecord", "WriteAheadLog"]

log = logging.getLogger(__name__)

_MAGIC = 0x4B54  # "KT"
_VERSION = 1
# magic u16, version u16, body length u32, crc32 u32, seq u64, source len u16, codec len u16
_HEADER = struct.Struct("<HHIIQHH")
_CRC_FROM = 12  # the CRC covers seq, the two lengths and the body
_SUFFIX = ".wal"
_CHECKPOINT = "checkpoint"
_MAX_RECORD_BYTES = 1 << 31


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One appended unit: ``data`` as received, ``codec`` says how the pipeline decodes it."""

    seq: int
    source: str
    codec: str
    data: bytes


def encode_record(seq: int, source: str, codec: str, data: bytes) -> bytes:
    src, cod = source.encode(), codec.encode()
    body_len = len(src) + len(cod) + len(data)
    tail = struct.pack("<QHH", seq, len(src), len(cod))
    crc = zlib.crc32(data, zlib.crc32(cod, zlib.crc32(src, zlib.crc32(tail))))
    return b"".join((struct.pack("<HHII", _MAGIC, _VERSION, body_len, crc), tail, src, cod, data))


@dataclass
class _Segment:
    first_seq: int
    path: Path
    last_seq: int = -1  # -1: no record yet


@dataclass
class _Pending:
    seq: int
    payload: bytes
    future: asyncio.Future[int] = field(repr=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """A segmented, checksummed, group-committed append-only log in ``directory``."""

    def __init__(self, directory: str | Path, segment_bytes: int = 64 << 20, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync_enabled = fsync
        self.corrupt_records = 0
        self.torn_bytes_truncated = 0
        self.fsyncs = 0
        self.bytes_written = 0
        self._segments: list[_Segment] = []
        self._file: int | None = None
        self._active_size = 0
        self._next_seq = 1
        self._checkpoint_seq = 0
        self._pending: list[_Pending] = []
        self._committer: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # serialises segment changes between the committer and checkpoint
        self._closed = False
        self._opened = False

    # -- opening and replay ---------------------------------------------------------------------

    def open(self) -> None:
        """Scan the segments (cutting a torn tail), then start a fresh segment for new records."""
        self.directory.mkdir(parents=True, exist_ok=True)
        cp = self.directory / _CHECKPOINT
        if cp.exists():
            try:
                self._checkpoint_seq = int(cp.read_text().strip() or 0)
            except ValueError as exc:
                raise StorageError("unreadable WAL checkpoint", path=str(cp)) from exc
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"), key=lambda p: int(p.stem))
        while paths and paths[-1].stat().st_size == 0:
            paths.pop().unlink()  # created right before a crash, never written
        last_seq = self._checkpoint_seq
        for index, path in enumerate(paths):
            seg = _Segment(int(path.stem), path)
            is_newest = index == len(paths) - 1
            for rec, _end in self._scan(seg, repair=is_newest):
                seg.last_seq = rec.seq
            if seg.last_seq < 0:
                path.unlink()  # nothing valid in it (a torn first record)
                continue
            last_seq = max(last_seq, seg.last_seq, seg.first_seq - 1)
            self._segments.append(seg)
        self._next_seq = last_seq + 1
        self._opened = True
        self._roll(self._next_seq)

    def _scan(
        self, seg: _Segment, repair: bool = False, report: bool = True
    ) -> Iterator[tuple[WalRecord, int]]:
        """Valid records of a segment. A bad record followed by valid ones is corruption: it is
        counted and skipped (magic + CRC resynchronise). Bad bytes with nothing valid after them are
        a torn tail: cut off when ``repair`` (the newest segment on open), else counted."""
        with open(seg.path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos < len(data):
            rec = self._decode_at(data, pos)
            if rec is None:
                resume = self._next_valid(data, pos + 1)
                if resume is not None:
                    if report:
                        self.corrupt_records += 1
                        log.error("WAL %s: corrupt record at %d skipped (next at %d)", seg.path, pos, resume)
                    pos = resume
                    continue
                if repair:
                    self.torn_bytes_truncated += len(data) - pos
                    log.warning("WAL %s: cutting %d torn bytes at offset %d", seg.path, len(data) - pos, pos)
                    with open(seg.path, "r+b") as fh:
                        fh.truncate(pos)
                        os.fsync(fh.fileno())
                elif report:
                    self.corrupt_records += 1
                    log.error("WAL %s: corrupt bytes at offset %d to the end of the segment", seg.path, pos)
                return
            record, pos = rec
            yield record, pos

    def _next_valid(self, data: bytes, start: int) -> int | None:
        """Offset of the next record that decodes with a valid CRC, if any."""
        magic = struct.pack("<HH", _MAGIC, _VERSION)
        pos = data.find(magic, start)
        while pos >= 0:
            if self._decode_at(data, pos) is not None:
                return pos
            pos = data.find(magic, pos + 1)
        return None

    @staticmethod
    def _decode_at(data: bytes, pos: int) -> tuple[WalRecord, int] | None:
        if pos + _HEADER.size > len(data):
            return None
        magic, version, body_len, crc, seq, src_len, cod_len = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + body_len
        if magic != _MAGIC or version != _VERSION or end > len(data) or src_len + cod_len > body_len:
            return None
        view = memoryview(data)
        if zlib.crc32(view[pos + _CRC_FROM : end]) != crc:
            return None
        start = pos + _HEADER.size
        source = bytes(view[start : start + src_len]).decode("utf-8", "replace")
        codec = bytes(view[start + src_len : start + src_len + cod_len]).decode("utf-8", "replace")
        return WalRecord(seq, source, codec, bytes(view[start + src_len + cod_len : end])), end

    def replay(self) -> Iterator[WalRecord]:
        """Records after the checkpoint, in sequence order (call after ``open``, before appending)."""
        for seg in list(self._segments):
            if seg.last_seq >= 0 and seg.last_seq <= self._checkpoint_seq:
                continue
            if not seg.path.exists() or seg.path.stat().st_size == 0:
                continue
            for rec, _ in self._scan(seg, report=False):  # open() already counted and logged
                if rec.seq > self._checkpoint_seq:
                    yield rec

    # -- appending ------------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def checkpoint_seq(self) -> int:
        return self._checkpoint_seq

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def pending_bytes(self) -> int:
        return sum(len(p.payload) for p in self._pending)

    def append(self, source: str, codec: str, data: bytes) -> tuple[int, asyncio.Future[int]]:
        """Assign a sequence number now; the future resolves to it once the record is fsynced."""
        if not self._opened or self._closed:
            raise StorageError("the WAL is not open", directory=str(self.directory))
        if len(data) >= _MAX_RECORD_BYTES:
            raise StorageError("record too large for the WAL", bytes=len(data))
        loop = asyncio.get_running_loop()
        seq = self._next_seq
        self._next_seq += 1
        pending = _Pending(seq, encode_record(seq, source, codec, data), loop.create_future())
        self._pending.append(pending)
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit_loop())
        return seq, pending.future

    async def append_wait(self, source: str, codec: str, data: bytes) -> int:
        _seq, fut = self.append(source, codec, data)
        return await fut

    async def _commit_loop(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._write_group, [p.payload for p in group], group[-1].seq)
            except Exception as exc:  # disk full, I/O error: every waiter hears it, nothing is acked
                log.exception("WAL write failed")
                err = StorageError(f"WAL write failed: {exc}", directory=str(self.directory))
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            for p in group:
                if not p.future.done():
                    p.future.set_result(p.seq)

    def _write_group(self, payloads: list[bytes], last_seq: int) -> None:
        with self._lock:
            if self._file is None:
                raise StorageError("the WAL is closed", directory=str(self.directory))
            data = b"".join(payloads)
            view = memoryview(data)
            while view:
                written = os.write(self._file, view)
                view = view[written:]
            if self.fsync_enabled:
                os.fsync(self._file)
            self.fsyncs += 1
            self.bytes_written += len(data)
            self._active_size += len(data)
            self._segments[-1].last_seq = last_seq
            if self._active_size >= self.segment_bytes:
                self._roll(last_seq + 1)

    def _roll(self, first_seq: int) -> None:
        """Close the active segment and start a new one named after its first sequence number."""
        if self._file is not None:
            os.close(self._file)
        seg = _Segment(first_seq, self.directory / f"{first_seq:020d}{_SUFFIX}")
        self._file = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        _fsync_dir(self.directory)
        self._segments.append(seg)
        self._active_size = 0

    # -- truncation -----------------------------------------------------------------------------

    def checkpoint(self, seq: int) -> int:
        """The store durably holds every record <= ``seq``: remember it and delete covered segments.

        Returns the number of segments deleted.
        """
        if seq <= self._checkpoint_seq:
            return 0
        path = self.directory / _CHECKPOINT
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(str(seq))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.directory)
        self._checkpoint_seq = seq
        deleted = 0
        with self._lock:
            while len(self._segments) > 1 and 0 <= self._segments[0].last_seq <= seq:
                self._segments.pop(0).path.unlink(missing_ok=True)
                deleted += 1
            while len(self._segments) > 1 and self._segments[0].last_seq < 0:
                self._segments.pop(0).path.unlink(missing_ok=True)  # empty, not active
                deleted += 1
        return deleted

    # -- closing --------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every appended record is fsynced."""
        while self._committer is not None and not self._committer.done():
            await asyncio.shield(self._committer)

    async def close(self) -> None:
        await self.drain()
        self.close_sync()

    def close_sync(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                if self.fsync_enabled:
                    os.fsync(self._file)
                os.close(self._file)
                self._file = None
