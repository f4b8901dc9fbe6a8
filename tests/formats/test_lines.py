from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubetrail.formats.lines import split_lines


def test_basic_split() -> None:
    out = split_lines(b"a\nbc\r\n\nrest")
    assert out.lines.to_pylist() == [b"a", b"bc\r", b""]
    assert out.offsets.to_pylist() == [0, 2, 6]
    assert out.tail == b"rest"


def test_no_newline() -> None:
    out = split_lines(b"partial")
    assert len(out.lines) == 0
    assert out.tail == b"partial"


@given(st.binary(max_size=2000))
def test_lossless(data: bytes) -> None:
    out = split_lines(data)
    rebuilt = b"".join(line + b"\n" for line in out.lines.to_pylist()) + out.tail
    assert rebuilt == data
    for line, off in zip(out.lines.to_pylist(), out.offsets.to_pylist(), strict=True):
        assert data[off : off + len(line)] == line


def test_line_carry_joins_tails_and_bounds_long_lines() -> None:
    from kubetrail.formats.kernels import Flags
    from kubetrail.formats.lines import LineCarry

    carry = LineCarry(max_line_bytes=8)
    first = carry.feed("k", 0, b"ab\ncd", 0.0)
    assert first.lines().to_pylist() == [b"ab"]
    second = carry.feed("k", 5, b"ef\n0123456789abc\nok\n", 1.0)
    assert second.lines().to_pylist() == [b"cdef", b"01234567", b"ok"]
    assert second.offsets.tolist() == [3, 8, 22]
    assert second.bits.tolist() == [0, Flags.bit("line_too_long"), 0]
    carry.feed("k", 25, b"x" * 20, 2.0)  # a long unterminated tail keeps only max_line_bytes
    assert carry.flush(3.0, 5.0) == {}
    out = carry.flush(9.0, 5.0)["k"]
    assert out.lines().to_pylist() == [b"x" * 8]
    assert out.bits.tolist() == [Flags.bit("incomplete_line") | Flags.bit("line_too_long")]
