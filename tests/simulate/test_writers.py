"""CRI and docker framing: partial lines reassemble to the original line."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.simulate.arrowtext import rfc3339_nano, slice_bytes, to_arrow
from kubetrail.simulate.writers import CRI_MAX_BYTES, encode_cri, encode_docker, to_bytes

from .helpers import cri_records, docker_records

T0 = 1_767_268_800_000_000_000


def _cri_roundtrip(msgs: list[str], split_prob: float, seed: int = 0) -> list[bytes]:
    n = len(msgs)
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    stderr = np.arange(n) % 3 == 0
    units = encode_cri(rfc3339_nano(ts), stderr, to_arrow(msgs), np.random.default_rng(seed), split_prob)
    assert len(units) == n
    data = bytes(slice_bytes(units, 0, n))
    return [m for _, m in cri_records(data)]


def test_long_lines_split_at_16k_and_reassemble() -> None:
    msgs = ["short", "x" * (CRI_MAX_BYTES * 3 + 17), "é" * 20000, "tail"]
    out = _cri_roundtrip(msgs, 0.0)
    assert out == [to_bytes(m) for m in msgs]
    n = len(msgs)
    ts = T0 + np.arange(n, dtype=np.int64)
    units = encode_cri(rfc3339_nano(ts), np.zeros(n, bool), to_arrow(msgs), np.random.default_rng(0), 0.0)
    raw = bytes(slice_bytes(units, 0, n)).split(b"\n")[:-1]
    tags = [line.split(b" ", 3)[2] for line in raw]
    assert tags == [b"F", b"P", b"P", b"P", b"F", b"P", b"P", b"F", b"F"]
    for line in raw:
        assert len(line.split(b" ", 3)[3]) <= CRI_MAX_BYTES


def test_random_split_points_reassemble() -> None:
    msgs = [f"line {i} " + "abc" * (i % 50) for i in range(2000)]
    n = len(msgs)
    ts = T0 + np.arange(n, dtype=np.int64)
    units = encode_cri(rfc3339_nano(ts), np.zeros(n, bool), to_arrow(msgs), np.random.default_rng(1), 0.2)
    physical = bytes(slice_bytes(units, 0, n)).count(b"\n")
    assert physical > n * 1.1, "about a fifth of the lines are cut"
    assert _cri_roundtrip(msgs, 0.2, seed=1) == [m.encode() for m in msgs]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=300).filter(lambda s: "\n" not in s), min_size=1, max_size=30))
def test_cri_roundtrip_any_text(msgs: list[str]) -> None:
    msgs = [m.replace("\r", "") or "x" for m in msgs]
    assert _cri_roundtrip(msgs, 0.5, seed=3) == [to_bytes(m) for m in msgs]


def test_docker_partials_reassemble_and_escape() -> None:
    msgs = ['{"a":"<b>&"}', "y" * (40_000), "tab\there", 'quote " and \\ backslash']
    times = rfc3339_nano(T0 + np.arange(4, dtype=np.int64)).to_pylist()
    units = encode_docker(times, np.array([False, True, False, False]), msgs)
    data = "".join(units).encode()
    assert b"\\u003cb\\u003e\\u0026" in data  # moby escapes <, > and & like Go's HTML-safe encoder
    lines = data.split(b"\n")[:-1]
    assert len(lines) == 3 + 3  # 40000 bytes -> 16384 + 16384 + 7232
    assert [m for _, m in docker_records(data)] == msgs
