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
