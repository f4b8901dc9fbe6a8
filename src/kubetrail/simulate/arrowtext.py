"""Bulk text assembly with Arrow kernels: a stream's lines become one Arrow array whose value buffer is
already the file's bytes (each value ends with ``\\n``), so numbering, timestamping, framing and writing
cost no Python per line.

Messages holding raw non-UTF-8 bytes (lone surrogates from ``surrogateescape``) make the array binary.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.simulate.timefmt import NS, format_seconds

__all__ = [
    "join",
    "offsets",
    "rfc3339_micro",
    "rfc3339_nano",
    "slice_bytes",
    "to_arrow",
    "unit_sizes",
    "with_seq",
]


def to_arrow(texts: list[str]) -> pa.Array:
    """A string array, or a binary one when some text carries raw bytes (surrogates)."""
    try:
        return pa.array(texts, type=pa.string())
    except (UnicodeEncodeError, pa.ArrowInvalid):
        return pa.array([t.encode("utf-8", "surrogateescape") for t in texts], type=pa.binary())


def _same_type(*arrays: pa.Array) -> list[pa.Array]:
    if any(a.type == pa.binary() for a in arrays):
        return [a.cast(pa.binary()) if a.type != pa.binary() else a for a in arrays]
    return list(arrays)


def join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of arrays and literal strings."""
    arrays = [p for p in parts if isinstance(p, pa.Array)]
    binary = any(pa.types.is_binary(a.type) or pa.types.is_large_binary(a.type) for a in arrays)
    # 64-bit offsets when any input has them: the result may pass 2 GiB (a day's audit log)
    large = any(pa.types.is_large_string(a.type) or pa.types.is_large_binary(a.type) for a in arrays)
    if binary:
        typ = pa.large_binary() if large else pa.binary()
    else:
        typ = pa.large_string() if large else pa.string()
    cols = [
        (p.cast(typ) if p.type != typ else p)
        if isinstance(p, pa.Array)
        else pa.scalar(p.encode() if binary else p, typ)
        for p in parts
    ]
    return pc.binary_join_element_wise(*cols, pa.scalar(b"" if binary else "", typ))


def rfc3339_nano(ts_ns: np.ndarray) -> pa.Array:
    """Go's ``time.RFC3339Nano`` (trailing zeros of the fraction dropped), as containerd and docker write.

    Each distinct second is formatted once; the fraction is padded and trimmed by Arrow kernels.
    """
    secs = ts_ns // NS
    uniq, inverse = np.unique(secs, return_inverse=True)
    prefix = pc.take(pa.array(format_seconds([int(x) for x in uniq], "%Y-%m-%dT%H:%M:%S")), pa.array(inverse))
    frac = pa.array(ts_ns - secs * NS).cast(pa.string())
    digits = pc.utf8_rtrim(pc.utf8_lpad(frac, width=9, padding="0"), characters="0")
    with_frac = join(prefix, ".", digits, "Z")
    return pc.if_else(pc.equal(pc.utf8_length(digits), 0), join(prefix, "Z"), with_frac)


def rfc3339_micro(ts_ns: np.ndarray) -> pa.Array:
    """``2026-01-01T12:00:00.123456Z`` (audit events' ``metav1.MicroTime``)."""
    secs = ts_ns // NS
    uniq, inverse = np.unique(secs, return_inverse=True)
    prefix = pc.take(pa.array(format_seconds([int(x) for x in uniq], "%Y-%m-%dT%H:%M:%S")), pa.array(inverse))
    micros = pc.utf8_lpad(pa.array((ts_ns - secs * NS) // 1000).cast(pa.string()), width=6, padding="0")
    return join(prefix, ".", micros, "Z")


def with_seq(msgs: pa.Array, json: np.ndarray, stream: str, first: int = 0) -> pa.Array:
    """Append ``kt_seq=<stream>:<n>`` (or a ``"kt_seq"`` key before a JSON object's closing brace)."""
    n = len(msgs)
    nums = pa.array(np.arange(first, first + n, dtype=np.int64)).cast(pa.string())
    plain = join(msgs, f" kt_seq={stream}:", nums)
    if not json.any():
        return plain
    body = pc.binary_slice(msgs, 0, -1) if msgs.type == pa.binary() else pc.utf8_slice_codeunits(msgs, 0, -1)
    as_json = join(body, f',"kt_seq":"{stream}:', nums, '"}')
    plain, as_json = _same_type(plain, as_json)
    return pc.if_else(pa.array(json), as_json, plain)


def offsets(arr: pa.Array) -> np.ndarray:
    """Byte offsets of the values (length ``len(arr) + 1``)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    width = np.int64 if pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type) else np.int32
    raw = np.frombuffer(arr.buffers()[1], dtype=width)
    return raw[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)


def unit_sizes(arr: pa.Array) -> np.ndarray:
    return np.diff(offsets(arr))


def slice_bytes(arr: pa.Array, start: int, end: int) -> memoryview:
    """The concatenated bytes of values ``start..end``, as a view of the array's value buffer (no copy)."""
    if end <= start:
        return memoryview(b"")
    off = offsets(arr)
    return memoryview(arr.buffers()[2])[off[start] : off[end]]
