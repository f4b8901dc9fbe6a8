"""Cut a chunk into lines as one Arrow array, without a Python loop per line.

``split_lines`` returns the complete lines (without ``\\n``), the byte offset of each within the
chunk, and the unterminated tail the caller must carry over to the next chunk of the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Lines", "split_lines"]


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
