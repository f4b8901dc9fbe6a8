from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.formats.kernels import (
    REASONS,
    Flags,
    cast_or_bisect,
    from_np,
    scatter,
    slice_ranges,
    to_np,
    to_utf8,
)
from kubetrail.schema import TIMESTAMP


def test_slice_ranges() -> None:
    data = b"0123456789"
    out = slice_ranges(data, np.array([0, 3, 3, 8]), np.array([2, 3, 6, 10]))
    assert out.to_pylist() == [b"01", b"", b"345", b"89"]


def test_cast_or_bisect_finds_only_the_bad_values() -> None:
    values = pa.array(["2024-05-05T00:00:00Z", "2024-13-01T00:00:00Z", None, "2024-02-30T00:00:00Z"])
    parsed, bad = cast_or_bisect(values, TIMESTAMP)
    assert bad.tolist() == [1, 3]
    assert parsed.is_valid().to_pylist() == [True, False, False, False]


def test_to_utf8_replaces_only_bad_rows() -> None:
    text, bad = to_utf8(pa.array([b"ok", b"bad \xff", None, b"\xe2\x82\xac"], pa.binary()))
    assert text.to_pylist() == ["ok", "bad \ufffd", None, "\u20ac"]
    assert bad.tolist() == [1]


def test_flags_columns_and_counts() -> None:
    flags = Flags(3)
    flags.set("bad_format", np.array([True, False, True]))
    flags.set("invalid_utf8", np.array([2]))
    codes, details = flags.columns()
    assert codes.to_pylist() == ["bad_format", None, "bad_format,invalid_utf8"]
    assert details.to_pylist()[0] == REASONS["bad_format"]
    assert flags.counts() == {"bad_format": 2, "invalid_utf8": 1}


def test_numpy_bridges() -> None:
    assert to_np(pa.array([1, None, 3]), 0).tolist() == [1, 0, 3]
    assert to_np(pa.array([True, None, False]).slice(1), False).tolist() == [False, False]
    assert from_np(np.array([True, False])).to_pylist() == [True, False]
    assert from_np(np.arange(3, dtype=np.int32)).type == pa.int32()
    assert scatter(pa.array(["a", "b"]), np.array([3, 0]), 4).to_pylist() == ["b", None, None, "a"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=30))
def test_fuzz_to_utf8(values: list[bytes]) -> None:
    text, bad = to_utf8(pa.array(values, pa.binary()))
    assert text.to_pylist() == [v.decode("utf-8", "replace") for v in values]
    expected_bad = []
    for i, v in enumerate(values):
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            expected_bad.append(i)
    assert bad.tolist() == expected_bad
