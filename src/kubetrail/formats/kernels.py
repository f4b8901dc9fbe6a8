"""Small vectorized building blocks the parsers share.

* ``slice_ranges`` cuts many byte ranges out of one buffer into a ``BinaryArray`` with a single
  ``take``: the ranges become the even values of an interleaved array whose odd values are the gaps.
* ``cast_or_bisect`` casts a whole array in one kernel and, only when that fails (one bad value fails
  the whole cast), bisects to the bad values, so a batch with one impossible timestamp still costs
  ``O(bad * log n)`` kernel calls instead of a Python loop over every line.
* ``to_utf8`` validates UTF-8 the same way and decodes just the bad values with replacement.
* ``Flags`` is a bit set of stable reason codes per row, turned into the ``event.parse_error`` and
  ``error.message`` columns with one ``take`` per distinct combination.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "REASONS",
    "Flags",
    "broadcast",
    "cast_or_bisect",
    "first_bytes",
    "from_np",
    "scatter",
    "slice_ranges",
    "to_np",
    "to_utf8",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Stable reason codes (the values of ``event.parse_error``) and the detail written to error.message.
REASONS: Mapping[str, str] = {
    "bad_format": "line does not match the expected format; kept as raw message",
    "bad_timestamp": "timestamp missing or impossible; @timestamp is the receive time",
    "invalid_utf8": "invalid UTF-8 replaced with U+FFFD",
    "nul_bytes": "line contains NUL bytes",
    "line_too_long": "line longer than max_line_bytes; kept the first max_line_bytes",
    "truncated": "reassembled message longer than max_message_bytes; kept the first max_message_bytes",
    "partial_timeout": "partial line not completed within partial_timeout_secs; emitted as is",
    "incomplete_line": "bytes without a final newline emitted at flush",
    "bad_json": "JSON record could not be decoded; kept as raw message",
    "stream_gap": "chunk did not continue the previous one; carried bytes emitted alone",
    "unknown_format": "no parser is registered for the chosen format; raw line kept",
    "internal_error": "parser failed internally; raw line kept",
}
_BIT = {name: 1 << i for i, name in enumerate(REASONS)}


class Flags:
    """Per-row reason bits; ``None`` rows mean no flag (the common case costs nothing)."""

    __slots__ = ("bits",)

    def __init__(self, n: int) -> None:
        self.bits = np.zeros(n, dtype=np.uint16)

    @staticmethod
    def bit(reason: str) -> int:
        return _BIT[reason]

    def set(self, reason: str, mask: BoolArray | IntArray) -> None:
        self.bits[mask] |= np.uint16(_BIT[reason])

    def any(self) -> bool:
        return bool(self.bits.any())

    def counts(self) -> dict[str, int]:
        if not self.bits.any():
            return {}
        out = {}
        for name, bit in _BIT.items():
            c = int(np.count_nonzero(self.bits & bit))
            if c:
                out[name] = c
        return out

    def columns(self) -> tuple[pa.Array, pa.Array]:
        """``(event.parse_error, error.message)``: null where no bit is set."""
        n = len(self.bits)
        if not self.bits.any():
            return pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
        combos, inverse = np.unique(self.bits, return_inverse=True)
        codes: list[str | None] = []
        details: list[str | None] = []
        for combo in combos.tolist():
            names = [name for name, bit in _BIT.items() if combo & bit]
            codes.append(",".join(names) or None)
            details.append("; ".join(REASONS[name] for name in names) or None)
        idx = from_np(inverse.astype(np.int32).reshape(-1))
        return pa.array(codes, pa.string()).take(idx), pa.array(details, pa.string()).take(idx)


_ARROW_OF = {
    np.dtype(np.int8): pa.int8(),
    np.dtype(np.int16): pa.int16(),
    np.dtype(np.int32): pa.int32(),
    np.dtype(np.int64): pa.int64(),
    np.dtype(np.uint8): pa.uint8(),
    np.dtype(np.uint16): pa.uint16(),
    np.dtype(np.uint32): pa.uint32(),
    np.dtype(np.uint64): pa.uint64(),
    np.dtype(np.float64): pa.float64(),
}


def from_np(values: npt.NDArray[Any]) -> pa.Array:
    """A numpy vector as an Arrow array without ``pa.array`` (which imports pandas on first use)."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        packed = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), values.size, [None, pa.py_buffer(packed.tobytes())])
    return pa.Array.from_buffers(_ARROW_OF[values.dtype], values.size, [None, pa.py_buffer(values)])


def _numpy_dtype(typ: pa.DataType) -> np.dtype[Any]:
    if pa.types.is_integer(typ):
        return np.dtype(str(typ))
    if pa.types.is_floating(typ):
        return np.dtype({"double": "float64", "float": "float32", "halffloat": "float16"}[str(typ)])
    if pa.types.is_timestamp(typ) or pa.types.is_duration(typ) or pa.types.is_date64(typ):
        return np.dtype(np.int64)
    raise TypeError(f"no numpy view for {typ}")


def to_np(arr: pa.Array | pa.ChunkedArray, fill: object = None) -> npt.NDArray[Any]:
    """A numpy view of a primitive or boolean array, straight from its buffers.

    ``Array.to_numpy`` imports pandas on first use (a third of a second per process); this does not.
    Nulls are replaced by ``fill`` first (required when the array has nulls).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        arr = arr.fill_null(fill)
    n = len(arr)
    data = arr.buffers()[1]
    if pa.types.is_boolean(arr.type):
        if data is None:
            return np.zeros(n, dtype=bool)
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return bits[arr.offset : arr.offset + n].astype(bool)
    dtype = _numpy_dtype(arr.type)
    if data is None:
        return np.zeros(n, dtype=dtype)
    return np.frombuffer(data, dtype=dtype)[arr.offset : arr.offset + n]


def first_bytes(values: pa.Array) -> npt.NDArray[np.uint8]:
    """The first byte of every value (0 for empty ones), gathered straight from the buffer."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + n + 1]
    data = values.buffers()[2]
    if data is None or data.size == 0:
        return np.zeros(n, dtype=np.uint8)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = offsets[:-1]
    picked = buf[np.minimum(starts, buf.size - 1)]
    out: npt.NDArray[np.uint8] = np.where(offsets[1:] > starts, picked, 0).astype(np.uint8)
    return out


def scatter(values: pa.Array, rows: npt.NDArray[np.int64], n: int) -> pa.Array:
    """Values for a subset of rows -> a length-n array with nulls elsewhere (one ``take``)."""
    index = np.full(n, -1, dtype=np.int64)
    index[rows] = np.arange(rows.size)
    valid = index >= 0
    validity = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    positions = pa.Array.from_buffers(pa.int64(), n, [validity, pa.py_buffer(np.maximum(index, 0))])
    return values.take(positions)


def slice_ranges(data: bytes | pa.Buffer, starts: IntArray, ends: IntArray) -> pa.BinaryArray:
    """``data[starts[i]:ends[i]]`` for every i as one array; ranges must be ordered and disjoint."""
    n = len(starts)
    if n == 0:
        return pa.array([], pa.binary())
    size = len(data)
    wide = size >= 2**31 - 1
    offsets = np.empty(2 * n + 1, dtype=np.int64 if wide else np.int32)
    offsets[0] = 0
    offsets[1::2] = starts
    offsets[2::2] = ends
    typ = pa.large_binary() if wide else pa.binary()
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    interleaved = pa.Array.from_buffers(typ, 2 * n, [None, pa.py_buffer(offsets), buf])
    picked = interleaved.take(from_np(np.arange(1, 2 * n, 2, dtype=np.int32)))
    return picked.cast(pa.binary()) if wide else picked


def broadcast(value: str | None, n: int, typ: pa.DataType | None = None) -> pa.Array:
    typ = typ or pa.string()
    if value is None:
        return pa.nulls(n, typ)
    return pa.repeat(pa.scalar(value, typ), n)


def _bad_positions(arr: pa.Array, typ: pa.DataType, lo: int, hi: int, out: list[int]) -> None:
    try:
        arr.slice(lo, hi - lo).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        if hi - lo == 1:
            out.append(lo)
            return
        mid = (lo + hi) // 2
        _bad_positions(arr, typ, lo, mid, out)
        _bad_positions(arr, typ, mid, hi, out)


def cast_or_bisect(arr: pa.Array, typ: pa.DataType) -> tuple[pa.Array, IntArray]:
    """Cast ``arr``; values that cannot be cast become null and their positions are returned."""
    try:
        return arr.cast(typ), np.empty(0, dtype=np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        pass
    bad: list[int] = []
    _bad_positions(arr, typ, 0, len(arr), bad)
    positions = np.array(bad, dtype=np.int64)
    keep = np.ones(len(arr), dtype=bool)
    keep[positions] = False
    masked = pc.if_else(from_np(keep), arr, pa.nulls(len(arr), arr.type))
    return masked.cast(typ), positions


def to_utf8(arr: pa.Array) -> tuple[pa.StringArray, IntArray]:
    """Binary -> string; invalid values are decoded with U+FFFD replacement, positions returned."""
    if arr.type == pa.string():
        return arr, np.empty(0, dtype=np.int64)
    try:
        return arr.cast(pa.string()), np.empty(0, dtype=np.int64)
    except pa.ArrowInvalid:
        pass
    bad: list[int] = []
    _bad_positions(arr, pa.string(), 0, len(arr), bad)
    positions = np.array(bad, dtype=np.int64)
    # only the bad values are decoded in Python; the rest is one kernel
    fixed = [arr[i].as_py().decode("utf-8", "replace") for i in bad]
    keep = np.ones(len(arr), dtype=bool)
    keep[positions] = False
    good = pc.if_else(from_np(keep), arr, pa.nulls(len(arr), arr.type)).cast(pa.string())
    repl_index = np.zeros(len(arr), dtype=np.int32)
    repl_index[positions] = np.arange(len(bad), dtype=np.int32)
    replacement = pa.array(fixed, pa.string()).take(from_np(repl_index)) if bad else good
    valid_in = arr.is_valid()
    merged = pc.if_else(from_np(keep), good, replacement)
    return pc.if_else(valid_in, merged, pa.nulls(len(arr), pa.string())), positions
