"""Reassembly of partial lines (CRI ``P`` ... ``F``, docker ``log`` without ``\\n``), vectorized.

The runtime splits a long line into pieces (16 KiB by default); only the last is marked final. Pieces
of stdout and stderr interleave in one file, so grouping is per (stream key, stdout/stderr).

A batch without partial pieces and without carried state passes straight through. Otherwise the
pieces are stably sorted by stream, groups are numbered with a cumulative sum over "previous piece
was final", and one ``take`` lays every group's pieces next to each other in a fresh buffer; the
joined messages are then a zero-copy array whose offsets are the group boundaries. The last group of
a stream without its final piece is carried to the next chunk (capped at ``max_message_bytes``) and
emitted flagged ``partial_timeout`` when no final piece comes within the timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.chunk import Origin
from kubetrail.formats.kernels import Flags, from_np, to_np

__all__ = ["STREAM_NAMES", "Pieces", "Reassembler"]

STREAM_NAMES = ("stdout", "stderr")  # codes 0 and 1; code 2 = unknown (line did not parse)
UNKNOWN_STREAM = 2


@dataclass(slots=True)
class Pieces:
    """Column-wise pieces or events of one origin, in stream order."""

    message: pa.Array  # binary before UTF-8 decoding, string after
    stream: npt.NDArray[np.int8]
    ts: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    bits: npt.NDArray[np.uint16]
    extra: dict[str, pa.Array] = field(default_factory=dict)  # more schema columns, row-aligned

    def __len__(self) -> int:
        return len(self.message)

    def take(self, idx: npt.NDArray[np.int64]) -> Pieces:
        positions = from_np(idx)
        message = self.message.take(positions)
        extra = {name: col.take(positions) for name, col in self.extra.items()}
        return Pieces(message, self.stream[idx], self.ts[idx], self.offsets[idx], self.bits[idx], extra)

    @staticmethod
    def concat(parts: list[Pieces]) -> Pieces:
        if len(parts) == 1:
            return parts[0]
        names = {name for p in parts for name in p.extra}
        extra = {
            name: pa.concat_arrays(
                [p.extra[name] if name in p.extra else pa.nulls(len(p), pa.string()) for p in parts]
            )
            for name in names
        }
        message_type = parts[0].message.type
        return Pieces(
            pa.concat_arrays([p.message.cast(message_type) for p in parts]),
            np.concatenate([p.stream for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.offsets for p in parts]),
            np.concatenate([p.bits for p in parts]),
            extra,
        )

    def stream_array(self) -> pa.Array:
        names = pa.array([*STREAM_NAMES, None], pa.string())
        return names.take(from_np(self.stream.astype(np.int32)))


@dataclass(slots=True)
class _Pending:
    data: bytes
    offset: int
    ts: int
    bits: int
    since: float
    origin: Origin


class Reassembler:
    """Joins partial pieces per (stream key, stream); state survives across chunks."""

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        self.max_message_bytes = max_message_bytes
        self._pending: dict[tuple[str, int], _Pending] = {}

    def pending(self) -> int:
        return len(self._pending)

    def streams(self) -> list[tuple[str, int]]:
        return list(self._pending)

    def feed(self, origin: Origin, pieces: Pieces, final: npt.NDArray[np.bool_], now: float) -> Pieces:
        key = origin.stream_key()
        carried = [(code, self._pending.pop((key, code))) for code in (0, 1) if (key, code) in self._pending]
        if not carried and bool(final.all()):
            return self._cap(pieces)
        if carried:
            carried.sort(key=lambda item: item[1].offset)
            head = Pieces(
                pa.array([p.data for _, p in carried], pa.binary()),
                np.array([code for code, _ in carried], dtype=np.int8),
                np.array([p.ts for _, p in carried], dtype=np.int64),
                np.array([p.offset for _, p in carried], dtype=np.int64),
                np.array([p.bits for _, p in carried], dtype=np.uint16),
            )
            since = {code: p.since for code, p in carried}
            pieces = Pieces.concat([head, pieces])
            final = np.concatenate([np.zeros(len(carried), dtype=bool), final])
        else:
            since = {}
        n = len(pieces)
        order = np.argsort(pieces.stream, kind="stable")
        s_stream = pieces.stream[order]
        s_final = final[order]
        starts_group = np.ones(n, dtype=bool)
        starts_group[1:] = (s_stream[1:] != s_stream[:-1]) | s_final[:-1]
        group_first = np.flatnonzero(starts_group)
        group_last = np.append(group_first[1:] - 1, n - 1)
        sorted_msg = pieces.message.take(from_np(order))
        value_offsets = np.frombuffer(sorted_msg.buffers()[1], dtype=np.int32)[
            sorted_msg.offset : sorted_msg.offset + n + 1
        ]
        bounds = np.append(value_offsets[group_first], value_offsets[n]).astype(np.int32)
        joined = pa.Array.from_buffers(
            pa.binary(), group_first.size, [None, pa.py_buffer(bounds.tobytes()), sorted_msg.buffers()[2]]
        )
        first_rows = order[group_first]
        bits = np.bitwise_or.reduceat(pieces.bits[order], group_first).astype(np.uint16)
        events = Pieces(
            joined, pieces.stream[first_rows], pieces.ts[first_rows], pieces.offsets[first_rows], bits
        )
        complete = s_final[group_last] | (events.stream == UNKNOWN_STREAM)
        for g in np.flatnonzero(~complete).tolist():
            code = int(events.stream[g])
            data = events.message[g].as_py()
            pbits = int(events.bits[g])
            if len(data) > self.max_message_bytes:
                data = data[: self.max_message_bytes]
                pbits |= Flags.bit("truncated")
            self._pending[(key, code)] = _Pending(
                data, int(events.offsets[g]), int(events.ts[g]), pbits, since.get(code, now), origin
            )
        keep = np.flatnonzero(complete)
        keep = keep[np.argsort(events.offsets[keep], kind="stable")]
        return self._cap(events.take(keep))

    def _cap(self, events: Pieces) -> Pieces:
        lengths = pc.binary_length(events.message)
        if len(events) == 0 or pc.max(lengths).as_py() <= self.max_message_bytes:
            return events
        too_long = to_np(pc.greater(lengths, self.max_message_bytes))
        events.bits[too_long] |= np.uint16(Flags.bit("truncated"))
        events.message = pc.binary_slice(events.message, 0, self.max_message_bytes)
        return events

    def flush(self, now: float, timeout: float, force: bool = False) -> list[tuple[Origin, Pieces]]:
        """Emit carried partials older than ``timeout`` seconds (all with ``force``), flagged."""
        out: list[tuple[Origin, Pieces]] = []
        for (key, code), p in list(self._pending.items()):
            if not force and now - p.since < timeout:
                continue
            del self._pending[(key, code)]
            bits = p.bits | Flags.bit("partial_timeout")
            out.append(
                (
                    p.origin,
                    Pieces(
                        pa.array([p.data], pa.binary()),
                        np.array([code], dtype=np.int8),
                        np.array([p.ts], dtype=np.int64),
                        np.array([p.offset], dtype=np.int64),
                        np.array([bits], dtype=np.uint16),
                    ),
                )
            )
        return out
