"""Cut a chunk into lines as one Arrow array, without a Python loop per line.

``split_lines`` returns the complete lines (without ``\\n``), the byte offset of each within the
chunk, and the unterminated tail the caller must carry over to the next chunk of the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.formats.kernels import Flags, slice_ranges

__all__ = ["LineBlock", "LineCarry", "Lines", "find_lines", "split_lines"]


@dataclass(frozen=True, slots=True)
class Lines:
    lines: pa.BinaryArray  # each line without its trailing "\n" (a "\r" before it is kept)
    offsets: pa.Int64Array  # byte offset of each line's first byte within the chunk
    tail: bytes  # bytes after the last "\n" (an incomplete line)


def split_lines(data: bytes) -> Lines:
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 0x0A)
    if newlines.size == 0:
        return Lines(pa.array([], type=pa.binary()), pa.array([], type=pa.int64()), data)
    end = int(newlines[-1]) + 1
    starts = np.empty(newlines.size + 1, dtype=np.int32 if end < 2**31 else np.int64)
    starts[0] = 0
    starts[1:] = newlines + 1
    # Each value spans start..next start, so it still ends with "\n"; drop that byte in one kernel.
    offsets_type = pa.int32() if starts.dtype == np.int32 else pa.int64()
    binary_type = pa.binary() if offsets_type == pa.int32() else pa.large_binary()
    with_nl = pa.Array.from_buffers(
        binary_type,
        newlines.size,
        [None, pa.py_buffer(starts.tobytes()), pa.py_buffer(data[:end])],
    )
    lines = pc.binary_slice(with_nl, 0, -1)
    if lines.type != pa.binary():
        lines = lines.cast(pa.binary())
    return Lines(lines, pa.array(starts[:-1].astype(np.int64)), data[end:])


def find_lines(data: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """Line ``starts`` and ``ends`` (exclusive, without ``\\n``) in ``data``, and where the tail starts.

    Nothing is copied: parsers gather from ``data`` with these positions.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 0x0A)
    ends = newlines.astype(np.int64, copy=False)
    starts = np.empty(ends.size, dtype=np.int64)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    tail_start = int(ends[-1]) + 1 if ends.size else 0
    return starts, ends, tail_start


@dataclass(slots=True)
class LineBlock:
    """Complete lines of one stream, as positions into ``data`` plus per-line reason bits.

    ``offsets`` are absolute byte offsets in the stream (the ``event.id`` suffix); ``bits`` are
    ``kubetrail.formats.kernels.Flags`` bits set by the line cutter (too long, incomplete, gap).
    """

    data: bytes
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    bits: npt.NDArray[np.uint16]

    def __len__(self) -> int:
        return int(self.starts.size)

    def lines(self) -> pa.BinaryArray:
        return slice_ranges(self.data, self.starts, self.ends)


@dataclass(slots=True)
class _Tail:
    kept: bytes
    start: int  # absolute offset of the tail's first byte
    dropped: int  # bytes beyond max_line_bytes already thrown away
    since: float  # receive time (epoch seconds) of the first tail byte


class LineCarry:
    """Carries the unterminated tail of every stream to its next chunk (``LineDecoder`` for chunks).

    A chunk that does not start where the previous one ended (``offset`` jumps) emits the carried
    bytes alone, flagged ``stream_gap``. Lines longer than ``max_line_bytes`` are cut to that size and
    flagged ``line_too_long``, whether they arrive in one chunk or in many; memory per stream stays
    bounded by ``max_line_bytes``.
    """

    def __init__(self, max_line_bytes: int = 1 << 20) -> None:
        self.max_line_bytes = max_line_bytes
        self._tails: dict[str, _Tail] = {}

    def pending(self) -> int:
        return len(self._tails)

    def has(self, key: str) -> bool:
        return key in self._tails

    def streams(self) -> list[str]:
        return list(self._tails)

    def feed(self, key: str, offset: int, data: bytes, now: float) -> LineBlock:
        pre_data: list[bytes] = []  # lines emitted before the chunk's own lines
        pre_offsets: list[int] = []
        pre_bits: list[int] = []
        base = offset
        tail = self._tails.pop(key, None)
        if tail is not None:
            expected = tail.start + len(tail.kept) + tail.dropped
            if expected != offset:
                pre_data.append(tail.kept)
                pre_offsets.append(tail.start)
                gap = Flags.bit("stream_gap") | Flags.bit("incomplete_line")
                pre_bits.append(gap | (Flags.bit("line_too_long") if tail.dropped else 0))
            elif tail.dropped:
                cut = data.find(b"\n")
                if cut < 0:
                    tail.dropped += len(data)
                    self._tails[key] = tail
                    data = b""
                else:
                    pre_data.append(tail.kept)
                    pre_offsets.append(tail.start)
                    pre_bits.append(Flags.bit("line_too_long"))
                    data = data[cut + 1 :]
                    base = offset + cut + 1
            else:
                data = tail.kept + data
                base = tail.start
        starts, ends, tail_start = find_lines(data)
        if tail_start < len(data) and key not in self._tails:
            rest = len(data) - tail_start
            since = tail.since if (tail is not None and base == tail.start and tail_start == 0) else now
            keep = min(rest, self.max_line_bytes)
            kept = data[tail_start : tail_start + keep]
            self._tails[key] = _Tail(kept, base + tail_start, rest - keep, since)
        offsets = starts + base
        bits = np.zeros(starts.size, dtype=np.uint16)
        too_long = (ends - starts) > self.max_line_bytes
        if too_long.any():
            ends = np.where(too_long, starts + self.max_line_bytes, ends)
            bits[too_long] |= np.uint16(Flags.bit("line_too_long"))
        if pre_data:
            joined = b"\n".join(pre_data) + b"\n"
            lens = np.array([len(p) for p in pre_data], dtype=np.int64)
            pre_starts = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64)
            shift = len(joined)
            data = joined + data
            starts = np.concatenate([pre_starts, starts + shift])
            ends = np.concatenate([pre_starts + lens, ends + shift])
            offsets = np.concatenate([np.array(pre_offsets, dtype=np.int64), offsets])
            bits = np.concatenate([np.array(pre_bits, dtype=np.uint16), bits])
        return LineBlock(data, starts, ends, offsets, bits)

    def flush(self, now: float, timeout: float, force: bool = False) -> dict[str, LineBlock]:
        """Emit tails older than ``timeout`` seconds (all with ``force``) as flagged lines."""
        out: dict[str, LineBlock] = {}
        for key in list(self._tails):
            tail = self._tails[key]
            if not force and now - tail.since < timeout:
                continue
            del self._tails[key]
            bits = Flags.bit("incomplete_line") | (Flags.bit("line_too_long") if tail.dropped else 0)
            out[key] = LineBlock(
                tail.kept,
                np.array([0], dtype=np.int64),
                np.array([len(tail.kept)], dtype=np.int64),
                np.array([tail.start], dtype=np.int64),
                np.array([bits], dtype=np.uint16),
            )
        return out
