"""The shared line-parser base: framing, carried tails, size caps, flags, ids (via the klog parser)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.formats._flags import REASONS, Flags
from kubetrail.formats._lineparser import decode_lines
from kubetrail.formats.base import get_parser_class
from kubetrail.formats.klog import KlogParser
from kubetrail.schema import SCHEMA

NOW = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)
LINE = b"I0505 17:59:40.692994   28133 file.go:70] hello\n"


def origin(offset: int = 0, inode: int = 7) -> Origin:
    return Origin(
        node="node-1",
        source="klog",
        path="/var/log/kubelet.log",
        file=FileIdentity(1, inode, "fp"),
        offset=offset,
    )


def test_parsers_are_registered() -> None:
    import kubetrail.formats.audit
    import kubetrail.formats.journald
    import kubetrail.formats.syslog  # noqa: F401

    for name in ("audit", "klog", "journald", "syslog", "syslog5424", "syslog3164"):
        assert get_parser_class(name).name == name


def test_event_ids_and_common_columns() -> None:
    parser = KlogParser()
    batch = parser.parse(Chunk(origin(100), LINE * 2), NOW)
    assert batch.schema == SCHEMA
    rows = batch.to_pylist()
    prefix = origin().id_prefix()
    assert [r["event.id"] for r in rows] == [f"{prefix}-100", f"{prefix}-{100 + len(LINE)}"]
    assert [r["log.offset"] for r in rows] == [100, 100 + len(LINE)]
    assert all(r["host.name"] == "node-1" and r["log.file.path"] == "/var/log/kubelet.log" for r in rows)
    assert all(r["event.module"] == "klog" and r["event.dataset"] == "node" for r in rows)
    assert all(r["event.ingested"] == NOW for r in rows)


def test_tail_is_carried_to_the_next_contiguous_chunk() -> None:
    parser = KlogParser()
    first = parser.parse(Chunk(origin(0), LINE[:20]), NOW)
    assert first.num_rows == 0
    second = parser.parse(Chunk(origin(20), LINE[20:] + LINE), NOW)
    assert second.column("message").to_pylist() == ["hello", "hello"]
    assert second.column("log.offset").to_pylist() == [0, len(LINE)]
    assert second.column("event.parse_error").null_count == 2


def test_flush_force_emits_the_tail_flagged_incomplete_line() -> None:
    parser = KlogParser()
    parser.parse(Chunk(origin(0), LINE + b"I0505 17:59:41.0 1 a.go:1] cut"), NOW)
    out = parser.flush(NOW, force=True)
    row = out.to_pylist()[0]
    assert row["event.parse_error"] == "incomplete_line"
    assert row["message"] == "cut"  # parsed as far as possible
    assert row["log.offset"] == len(LINE)
    assert parser.stats["error.incomplete_line"] == 1
    assert "error.truncated" not in parser.stats  # truncated means capped at a maximum size
    assert parser.flush(NOW, force=True).num_rows == 0


def test_timed_flush_and_the_rest_of_the_line_both_flagged() -> None:
    parser = KlogParser(tail_timeout_secs=5)
    parser.parse(Chunk(origin(0), b"I0505 17:59:41.0 1 a.go:1] first half"), NOW)
    assert parser.flush(NOW + timedelta(seconds=1)).num_rows == 0
    flushed = parser.flush(NOW + timedelta(seconds=6))
    assert flushed.column("event.parse_error").to_pylist() == ["incomplete_line"]
    rest = parser.parse(Chunk(origin(37), b" second half\n" + LINE), NOW)
    assert rest.column("event.parse_error").to_pylist()[0] == "incomplete_line,bad_format"
    assert rest.column("log.offset").to_pylist() == [37, 50]
    assert rest.column("event.parse_error").to_pylist()[1] is None


def test_a_gap_emits_the_stale_tail() -> None:
    parser = KlogParser()
    parser.parse(Chunk(origin(0), b"I0505 17:59:41.0 1 a.go:1] lost"), NOW)
    out = parser.parse(Chunk(origin(5000), LINE), NOW)
    assert out.column("event.parse_error").to_pylist() == ["incomplete_line,stream_gap", None]
    assert out.column("log.offset").to_pylist() == [0, 5000]


def test_long_lines_are_cut_and_flagged() -> None:
    parser = KlogParser(max_line_bytes=60)
    long_line = b"I0505 17:59:40.692994 1 file.go:70] " + b"x" * 100 + b"\n"
    out = parser.parse(Chunk(origin(0), long_line + LINE), NOW).to_pylist()
    assert out[0]["event.parse_error"] == "line_too_long"
    assert "136 bytes cut to 60" in out[0]["error.message"]
    assert out[0]["message"] == "x" * 24
    assert out[1]["event.parse_error"] is None


def test_long_line_across_many_chunks_keeps_memory_bounded() -> None:
    parser = KlogParser(max_line_bytes=50)
    head = b"I0505 17:59:40.692994 1 file.go:70] "
    parser.parse(Chunk(origin(0), head + b"y" * 30), NOW)
    offset = len(head) + 30
    for _ in range(10):
        assert parser.parse(Chunk(origin(offset), b"z" * 1000), NOW).num_rows == 0
        offset += 1000
        assert sum(len(t.head) for t in parser._tails.values()) <= 50
    out = parser.parse(Chunk(origin(offset), b"end\n" + LINE), NOW).to_pylist()
    assert out[0]["event.parse_error"] == "line_too_long"
    assert out[0]["log.offset"] == 0
    assert f"line of {offset + 3} bytes" in out[0]["error.message"]
    assert out[1]["message"] == "hello" and out[1]["log.offset"] == offset + 4


def test_empty_chunk() -> None:
    out = KlogParser().parse(Chunk(origin(0), b""), NOW)
    assert out.num_rows == 0 and out.schema == SCHEMA


def test_invalid_utf8_and_nul_flagged_and_replaced() -> None:
    flags = Flags(3)
    text = decode_lines(pa.array([b"ok", b"bad \xff\xfe", b"nul\x00byte\r"]), flags)
    assert text.to_pylist() == ["ok", "bad \ufffd\ufffd", "nul\ufffdbyte"]
    reason, message = flags.columns()
    assert reason.to_pylist() == [None, "invalid_utf8", "nul_bytes"]
    assert "2 invalid byte(s)" in message[1].as_py()


def test_flags_keep_every_detail_and_rank_reasons() -> None:
    flags = Flags(2)
    flags.add("invalid_utf8", pa.array([True, False]), "a")
    flags.add("truncated", pa.array([True, True]), "b")
    reason, message = flags.columns()
    assert reason.to_pylist() == ["truncated,invalid_utf8", "truncated"]
    assert message.to_pylist() == ["truncated: b; invalid_utf8: a", "truncated: b"]
    assert flags.counts() == {"invalid_utf8": 1, "truncated": 2}
    assert REASONS.index("truncated") < REASONS.index("invalid_utf8")


def test_internal_errors_keep_the_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = KlogParser()

    def boom(*args: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(parser, "parse_text", boom)
    out = parser.parse(Chunk(origin(0), LINE), NOW).to_pylist()
    assert out[0]["event.parse_error"] == "internal_error"
    assert "kaboom" in out[0]["error.message"]
    assert out[0]["message"] == LINE.decode().rstrip("\n")
    assert parser.stats["error.internal_error"] == 1


def test_an_overflowing_tail_flushed_is_also_line_too_long() -> None:
    parser = KlogParser(max_line_bytes=16)
    parser.parse(Chunk(origin(0), b"I0505 17:59:41.0 1 a.go:1] no newline"), NOW)
    row = parser.flush(NOW, force=True).to_pylist()[0]
    assert row["event.parse_error"] == "incomplete_line,line_too_long,bad_format"


def test_aliases_resolve_from_a_fresh_process() -> None:
    code = (
        "from kubetrail.formats.base import get_parser_class, parser_names;"
        "assert get_parser_class('syslog5424').name == 'syslog5424';"
        "assert get_parser_class('syslog3164').name == 'syslog3164';"
        "assert get_parser_class('nodelog').name == 'nodelog';"
        "assert {'syslog5424', 'journald'} <= set(parser_names())"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
