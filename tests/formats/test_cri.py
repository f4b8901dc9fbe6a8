from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.formats.cri import CriParser
from kubetrail.formats.kernels import REASONS
from kubetrail.schema import SCHEMA
from tests.formats.helpers import NOW, POD_PATH, chunk, ns, origin, rows, split_feed

NOW_NS = ns(NOW.isoformat())

GOLDEN = (
    b"2024-05-05T17:59:40.692994123Z stdout F hello world\n"
    b"2024-05-05T17:59:41Z stderr P first half, \n"
    b"2024-05-05T17:59:41.5+02:00 stdout F between\n"
    b"2024-05-05T17:59:42Z stderr F second half\n"
    b"2024-05-05T17:59:43Z stdout F \n"
)


def test_golden_columns() -> None:
    batch = CriParser().parse(chunk(GOLDEN, 1000), NOW)
    assert batch.schema == SCHEMA
    prefix = origin().id_prefix()
    got = rows(batch, "message", "stream", "@timestamp", "event.id", "log.offset", "event.parse_error")
    ts = [r[2] for r in got]
    assert [r[0] for r in got] == ["hello world", "first half, second half", "between", ""]
    assert [r[1] for r in got] == ["stdout", "stderr", "stdout", "stdout"]
    assert ts == [
        ns("2024-05-05T17:59:40.692994123Z"),
        ns("2024-05-05T17:59:41Z"),
        ns("2024-05-05T15:59:41.5Z"),
        ns("2024-05-05T17:59:43Z"),
    ]
    line_starts = [0, *[i + 1 for i, b in enumerate(GOLDEN) if b == 0x0A][:-1]]
    expected = [1000 + line_starts[i] for i in (0, 1, 2, 4)]  # the partial's id is its FIRST piece
    assert [r[3] for r in got] == [f"{prefix}-{o}" for o in expected]
    assert [r[4] for r in got] == expected
    assert all(r[5] is None for r in got)
    first = batch.slice(0, 1).to_pylist()[0]
    assert first["kubernetes.namespace"] == "default"
    assert first["kubernetes.pod.name"] == "web-1"
    assert first["kubernetes.pod.uid"] == "6f1c2d3e-0000-4000-8000-000000000001"
    assert first["kubernetes.container.name"] == "app"
    assert first["kubernetes.container.restart_count"] == 2
    assert first["host.name"] == "node-a"
    assert first["log.file.path"] == POD_PATH
    assert first["event.module"] == "cri"
    assert first["event.dataset"] == "container"
    assert rows(batch.slice(0, 1), "event.ingested") == [(NOW_NS,)]


def test_bad_lines_are_flagged_not_lost() -> None:
    data = (
        b"not a cri line\n"
        b"2024-13-05T17:59:42Z stdout F month thirteen\n"
        b"2024-05-05T17:59:42Z stdout F bad \xff\xfe utf8\n"
        b"2024-05-05T17:59:42Z stdout F nul \x00 byte\n"
        b"2024-05-05T17:59:42Z stdin F wrong stream\n"
        b"\n"
    )
    parser = CriParser()
    batch = parser.parse(chunk(data), NOW)
    got = rows(batch, "message", "event.parse_error", "@timestamp", "error.message")
    assert got[0][:2] == ("not a cri line", "bad_format")
    assert got[0][2] == NOW_NS and got[0][3] == REASONS["bad_format"]
    assert got[1][:3] == ("month thirteen", "bad_timestamp", NOW_NS)
    assert got[2][0] == "bad \ufffd\ufffd utf8" and got[2][1] == "invalid_utf8"
    assert got[3][0] == "nul \ufffd byte" and got[3][1] == "nul_bytes"
    assert got[4][1] == "bad_format" and got[4][0].endswith("wrong stream")
    assert got[5][:2] == ("", "bad_format")
    assert parser.stats["parse_error.bad_format"] == 3
    assert parser.stats["parse_error.bad_timestamp"] == 1
    assert parser.stats["parse_error.invalid_utf8"] == 1


def test_empty_chunk_and_no_newline() -> None:
    parser = CriParser()
    assert parser.parse(chunk(b""), NOW).num_rows == 0
    assert parser.parse(chunk(b"2024-05-05T17:59:42Z stdout F no newline yet"), NOW).num_rows == 0
    out = parser.flush(NOW, force=True)
    assert rows(out, "message", "event.parse_error") == [("no newline yet", "incomplete_line")]


def test_partial_cap_and_timeout() -> None:
    parser = CriParser(max_message_bytes=300, partial_timeout_secs=5)
    piece = b"x" * 200
    data = b"".join(b"2024-05-05T17:59:42Z stdout P " + piece + b"\n" for _ in range(3))
    assert parser.parse(chunk(data), NOW).num_rows == 0
    early = datetime(2024, 5, 6, 0, 0, 3, tzinfo=UTC)
    assert parser.flush(early).num_rows == 0
    late = datetime(2024, 5, 6, 0, 0, 6, tzinfo=UTC)
    out = parser.flush(late)
    ((message, flag, offset),) = rows(out, "message", "event.parse_error", "log.offset")
    assert message == "x" * 300
    assert flag == "truncated,partial_timeout"
    assert offset == 0
    # a final piece after the flush is its own event
    tail = parser.parse(chunk(b"2024-05-05T17:59:42Z stdout F end\n", len(data)), late)
    assert rows(tail, "message") == [("end",)]


def test_line_too_long_in_one_chunk_and_across_chunks() -> None:
    long_line = b"2024-05-05T17:59:42Z stdout F " + b"y" * 1000 + b"\n"
    whole = CriParser(max_line_bytes=256)
    a = rows(
        whole.parse(chunk(long_line + b"2024-05-05T17:59:42Z stdout F ok\n"), NOW),
        "message",
        "event.parse_error",
    )
    split = CriParser(max_line_bytes=256)
    data = long_line + b"2024-05-05T17:59:42Z stdout F ok\n"
    b = rows(split_feed(split, data, [100, 300, 700]), "message", "event.parse_error")
    assert a == b
    assert a[0][1] == "line_too_long" and len(a[0][0]) == 256 - 30
    assert a[1] == ("ok", None)


def test_stream_gap_emits_carried_bytes() -> None:
    parser = CriParser()
    parser.parse(chunk(b"2024-05-05T17:59:42Z stdout F half"), NOW)
    out = parser.parse(chunk(b"2024-05-05T17:59:43Z stdout F next\n", 500), NOW)
    got = rows(out, "message", "event.parse_error", "log.offset")
    assert got == [("half", "incomplete_line,stream_gap", 0), ("next", None, 500)]


def test_interleaved_partials_per_stream_and_per_file() -> None:
    parser = CriParser()
    a = b"2024-05-05T17:59:42Z stdout P a1-\n"
    parser.parse(chunk(a, 0, inode=1), NOW)
    parser.parse(chunk(b"2024-05-05T17:59:42Z stdout P b1-\n", 0, inode=2), NOW)
    out1 = parser.parse(chunk(b"2024-05-05T17:59:42Z stdout F a2\n", len(a), inode=1), NOW)
    out2 = parser.parse(chunk(b"2024-05-05T17:59:42Z stdout F b2\n", len(a), inode=2), NOW)
    assert rows(out1, "message") == [("a1-a2",)]
    assert rows(out2, "message") == [("b1-b2",)]


_line = st.tuples(
    st.sampled_from(["stdout", "stderr"]),
    st.sampled_from(["P", "F"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40),
)


def _stream(lines: list[tuple[str, str, str]]) -> bytes:
    return b"".join(
        f"2024-05-05T17:59:{i % 60:02d}.{i:03d}Z {s} {t} {m}\n".encode() for i, (s, t, m) in enumerate(lines)
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, min_size=1, max_size=30), st.data())
def test_reassembly_lossless_under_any_split(lines: list[tuple[str, str, str]], data: st.DataObject) -> None:
    stream = _stream(lines)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=8))))
    cols = ("event.id", "message", "stream", "@timestamp", "event.parse_error")
    whole = sorted(rows(split_feed(CriParser(), stream, []), *cols), key=lambda r: str(r[0]))
    split = sorted(rows(split_feed(CriParser(), stream, cuts), *cols), key=lambda r: str(r[0]))
    assert split == whole
    # and nothing is lost: every byte of every message is in some event
    assert sum(len(r[1].encode()) for r in whole) == sum(len(m.encode()) for _, _, m in lines)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    parser = CriParser()
    out = split_feed(parser, data, [])
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    got = rows(out, "event.id", "event.parse_error")
    if b" P " not in data:
        assert len(got) == n_lines
    assert all(r[0] for r in got)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=6), st.integers(1, 8))
def test_fuzz_mutated_lines(mutations: list[tuple[int, int]], count: int) -> None:
    data = bytearray(b"".join(b"2024-05-05T17:59:42.123Z stdout F msg %d\n" % i for i in range(count)))
    for pos, value in mutations:
        if data[pos % len(data)] != 0x0A:  # keep the line structure; mutate the content
            data[pos % len(data)] = value if value not in (ord("P"), ord("\n")) else ord("Q")
    out = split_feed(CriParser(), bytes(data), [])
    got = rows(out, "event.id")
    assert len(got) == count
    assert len({r[0] for r in got}) == count
