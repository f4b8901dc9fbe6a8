"""Shared machinery of the container log formats (CRI and docker json-file).

Both formats are "one record per line, possibly a partial piece of a longer line". A concrete parser
only turns a ``LineBlock`` into ``Pieces`` plus a "final piece" mask (``decode_block``); this class
carries tails between chunks, reassembles partials, decodes UTF-8, flags, counts and builds the
full-schema batch. ``decode``/``drain`` expose the reassembled events before the batch is built, so
``kubetrail.formats.dispatch.Parsing`` can join stack traces and extract payloads in between.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Chunk, Origin
from kubetrail.formats.base import Parser
from kubetrail.formats.columns import finish_batch
from kubetrail.formats.kernels import Flags, from_np, to_np, to_utf8
from kubetrail.formats.lines import LineBlock, LineCarry, split_lines
from kubetrail.formats.partials import Pieces, Reassembler
from kubetrail.formats.timeparse import now_ns
from kubetrail.schema import TIMESTAMP, empty_batch

__all__ = ["ContainerParser", "Events", "fallback_batch", "receive_seconds"]

Events = list[tuple[Origin, Pieces]]


def receive_seconds(now: datetime | None) -> float:
    return now.timestamp() if now is not None else time.time()


def fallback_batch(chunk: Chunk, module: str, now: datetime | None, reason: str) -> pa.RecordBatch:
    """Every line of the chunk as a raw, flagged event: what a parser returns when it failed itself."""
    try:
        lines = split_lines(chunk.data)
        raw = lines.lines
        offsets = to_np(lines.offsets).astype(np.int64) + chunk.origin.offset
        if lines.tail:
            raw = pa.concat_arrays([raw, pa.array([lines.tail], pa.binary())])
            offsets = np.append(offsets, chunk.origin.offset + len(chunk.data) - len(lines.tail))
        message, _ = to_utf8(raw)
        flags = Flags(len(message))
        flags.set(reason, np.ones(len(message), dtype=bool))
        parse_error, detail = flags.columns()
        stamp = now_ns(now)
        columns = {
            "message": message,
            "@timestamp": pa.repeat(pa.scalar(stamp, pa.int64()), len(message)).cast(TIMESTAMP),
            "event.parse_error": parse_error,
            "error.message": detail,
        }
        return finish_batch(chunk.origin, module, offsets, columns, stamp)
    except Exception:  # the last line of defence must not raise either
        return empty_batch()


class ContainerParser(Parser):
    """Base of line-oriented container formats with partial-line reassembly."""

    def __init__(
        self,
        max_line_bytes: int = 1 << 20,
        max_message_bytes: int = 1 << 20,
        partial_timeout_secs: float = 5.0,
    ) -> None:
        self.carry = LineCarry(max_line_bytes)
        self.partials = Reassembler(max_message_bytes)
        self.partial_timeout_secs = partial_timeout_secs
        self.stats: Counter[str] = Counter()
        self._origins: dict[str, Origin] = {}

    # --- what a concrete format implements -------------------------------------------------------
    def decode_block(self, block: LineBlock, fallback_ns: int) -> tuple[Pieces, npt.NDArray[np.bool_]]:
        raise NotImplementedError  # abstract

    # --- the stages ------------------------------------------------------------------------------
    def decode(self, chunk: Chunk, now: datetime | None = None) -> Events:
        """Reassembled events (messages still bytes) of one chunk."""
        seconds = receive_seconds(now)
        origin = chunk.origin
        self._origins[origin.stream_key()] = origin
        block = self.carry.feed(origin.stream_key(), origin.offset, chunk.data, seconds)
        if not self.carry.has(origin.stream_key()):
            self._origins.pop(origin.stream_key(), None)
        self.stats["chunks"] += 1
        self.stats["bytes"] += len(chunk.data)
        if len(block) == 0:
            return []
        pieces, final = self.decode_block(block, now_ns(now))
        self.stats["lines"] += len(pieces)
        return [(origin, self.partials.feed(origin, pieces, final, seconds))]

    def drain(self, now: datetime | None = None, force: bool = False) -> Events:
        """Tails and partials that waited longer than the timeout (everything with ``force``)."""
        seconds = receive_seconds(now)
        out: Events = []
        for key, block in self.carry.flush(seconds, self.partial_timeout_secs, force).items():
            origin = self._origins[key]
            pieces, _ = self.decode_block(block, now_ns(now))
            self.stats["lines"] += len(pieces)
            whole = np.ones(len(pieces), dtype=bool)  # an unterminated tail has no continuation
            out.append((origin, self.partials.feed(origin, pieces, whole, seconds)))
        out += self.partials.flush(seconds, self.partial_timeout_secs, force)
        return out

    def active_streams(self) -> set[str]:
        """Stream keys with carried state (an unterminated tail or an unfinished partial)."""
        return set(self.carry.streams()) | {key for key, _ in self.partials.streams()}

    def finish(self, events: Events, now: datetime | None) -> pa.RecordBatch:
        batches = [self.to_batch(origin, pieces, now) for origin, pieces in events if len(pieces)]
        if not batches:
            return empty_batch()
        if len(batches) == 1:
            return batches[0]
        return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]

    def to_batch(
        self, origin: Origin, pieces: Pieces, now: datetime | None, extra: dict[str, pa.Array] | None = None
    ) -> pa.RecordBatch:
        message, flags = self.text(pieces)
        self.count(flags)
        parse_error, detail = flags.columns()
        columns: dict[str, pa.Array] = {
            "@timestamp": from_np(pieces.ts).cast(TIMESTAMP),
            "message": message,
            "stream": pieces.stream_array(),
            "event.parse_error": parse_error,
            "error.message": detail,
        }
        if extra:
            payload_error = extra.pop("error.message", None)
            columns.update(extra)
            if payload_error is not None:  # a parse error's detail wins over the payload's error
                columns["error.message"] = pc.coalesce(detail, payload_error)
        return finish_batch(origin, self.name, pieces.offsets, columns, now_ns(now))

    def text(self, pieces: Pieces) -> tuple[pa.StringArray, Flags]:
        """UTF-8 messages (bad bytes replaced) and the rows' flags, NUL bytes flagged."""
        message, invalid = to_utf8(pieces.message)
        flags = Flags(0)
        flags.bits = pieces.bits
        if invalid.size:
            flags.set("invalid_utf8", invalid)
        data = pieces.message.buffers()[2]
        if data is not None and data.size and int(np.frombuffer(data, dtype=np.uint8).min()) == 0:
            nul = pc.match_substring(pieces.message, "\x00").fill_null(False)
            flags.set("nul_bytes", to_np(nul, False))
            message = pc.replace_substring(message, "\x00", "\ufffd")
        return message, flags

    def count(self, flags: Flags) -> None:
        self.stats["events"] += len(flags.bits)
        for reason, c in flags.counts().items():
            self.stats[f"parse_error.{reason}"] += c

    # --- the Parser interface --------------------------------------------------------------------
    def parse(self, chunk: Chunk, now: datetime | None = None) -> pa.RecordBatch:
        try:
            return self.finish(self.decode(chunk, now), now)
        except Exception:
            self.stats["internal_errors"] += 1
            return fallback_batch(chunk, self.name, now, "internal_error")

    def flush(self, now: datetime | None = None, force: bool = False) -> pa.RecordBatch:
        try:
            return self.finish(self.drain(now, force), now)
        except Exception:
            self.stats["internal_errors"] += 1
            return empty_batch()
