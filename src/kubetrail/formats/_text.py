"""Text kernels for the node-log parsers: header extraction without capturing the message.

RE2 pays for every capture group, and most for one that spans the long rest of a line; a header
pattern that captures only the header (and a group ``m`` around all of it) followed by a byte-range
gather of the rest runs several times faster than ``^(header)(?P<rest>.*)$``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.formats.kernels import slice_ranges

__all__ = ["extract_head", "slice_fixed"]


def extract_head(text: pa.StringArray, head_pattern: str) -> tuple[pa.StructArray, pa.Array, pa.StringArray]:
    """(groups, matched mask, rest of each line after the head; the whole line where no match)."""
    parts = pc.extract_regex(text, f"^(?P<m>{head_pattern})")
    matched = parts.is_valid()
    head_len = np.asarray(
        pc.fill_null(pc.binary_length(pc.struct_field(parts, "m")), 0).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    if text.type != pa.string():
        text = text.cast(pa.string())
    text = text if text.null_count == 0 else pc.fill_null(text, "")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + len(text) + 1]
    data = text.buffers()[2]
    if data is None:
        return parts, matched, text
    rest = slice_ranges(data, offsets[:-1].astype(np.int64) + head_len, offsets[1:].astype(np.int64))
    return parts, matched, rest.cast(pa.string())


def slice_fixed(text: pa.Array, start: int, stop: int) -> pa.Array:
    """Code units ``start:stop`` of every row (fixed-width fields of a matched header)."""
    return pc.utf8_slice_codeunits(text, start, stop)
