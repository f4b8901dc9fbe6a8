from __future__ import annotations

import numpy as np
import pyarrow as pa

from kubetrail.formats.partials import Pieces, Reassembler
from tests.formats.helpers import origin


def pieces(*items: tuple[str, int, bool]) -> tuple[Pieces, np.ndarray]:
    n = len(items)
    message = pa.array([m.encode() for m, _, _ in items], pa.binary())
    stream = np.array([s for _, s, _ in items], dtype=np.int8)
    final = np.array([f for _, _, f in items], dtype=bool)
    offsets = np.arange(n, dtype=np.int64) * 10
    return Pieces(message, stream, offsets + 1, offsets, np.zeros(n, dtype=np.uint16)), final


def test_fast_path_returns_input_unchanged() -> None:
    p, final = pieces(("a", 0, True), ("b", 1, True))
    assert Reassembler().feed(origin(), p, final, 0.0) is p


def test_groups_per_stream_keep_first_piece_identity() -> None:
    p, final = pieces(("a1", 0, False), ("b1", 1, False), ("a2", 0, True), ("x", 0, True), ("b2", 1, True))
    out = Reassembler().feed(origin(), p, final, 0.0)
    assert out.message.to_pylist() == [b"a1a2", b"b1b2", b"x"]
    assert out.offsets.tolist() == [0, 10, 30]
    assert out.ts.tolist() == [1, 11, 31]
    assert out.stream.tolist() == [0, 1, 0]


def test_carried_partial_is_bounded_and_flushed() -> None:
    joiner = Reassembler(max_message_bytes=4)
    p, final = pieces(("abc", 0, False), ("def", 0, False))
    assert len(joiner.feed(origin(), p, final, 10.0)) == 0
    assert joiner.pending() == 1
    assert joiner.flush(12.0, 5.0) == []
    ((_, out),) = joiner.flush(16.0, 5.0)
    assert out.message.to_pylist() == [b"abcd"]
    assert out.bits.tolist() != [0]
