"""Sequence ids: unique and contiguous per stream across the whole tree (rotated and gzipped files too)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from kubetrail.simulate import SimulationReport, check_seq, count_seq, extract_seq
from kubetrail.simulate.seq import SEQ_RE, seq_token

from .test_truth import records


def test_extract_seq_forms() -> None:
    assert extract_seq("GET / 200 kt_seq=n1.c4:17") == [("n1.c4", 17)]
    assert extract_seq(b'{"msg":"x","kt_seq":"n0.c1:3"}') == [("n0.c1", 3)]
    assert extract_seq('{"annotations":{"kubetrail.io/seq":"audit:9"}}') == [("audit", 9)]
    journald = '{"KT_SEQ":"n2.journal.kubelet:5","MESSAGE":"I0101 ... kt_seq=n2.journal.kubelet:5"}'
    assert extract_seq(journald) == [("n2.journal.kubelet", 5)]  # field + message count once
    assert extract_seq("merged\n  at a kt_seq=s:1\n  at b kt_seq=s:2") == [("s", 1), ("s", 2)]
    assert extract_seq("no id here") == []
    assert SEQ_RE.search(seq_token("a.b-c", 0))


def test_check_seq_reports_missing_and_duplicates() -> None:
    seen = count_seq(["x kt_seq=s:0", "x kt_seq=s:2", "x kt_seq=s:2", "kt_seq=t:0"])
    res = check_seq(seen, {"s": 3, "t": 1})
    assert res.missing == {"s": [1]} and res.duplicated == {"s": [2]} and not res.unexpected
    assert not res.ok and res.missing_count == 1 and res.duplicated_count == 1
    assert check_seq(count_seq(["kt_seq=s:0", "kt_seq=s:1"]), {"s": 2}).ok
    assert check_seq(count_seq(["kt_seq=s:2"]), {"s": 3}, {"s": [(0, 2)]}).ok  # 0 and 1 rotated away


def test_report_counts_check_against_files(small_sim: SimulationReport) -> None:
    seen = count_seq(rec for info in small_sim.streams.values() for rec in records(small_sim.root, info))
    result = check_seq(seen, small_sim.expected_seq(), small_sim.deleted_seq())
    assert result.ok, (result.missing_count, result.duplicated_count)
    assert small_sim.deleted_seq(), "the small run rotates some lines away (rotate_keep=4)"


def test_every_stream_contiguous(small_sim: SimulationReport) -> None:
    assert len(small_sim.streams) > 30
    for stream, info in small_sim.streams.items():
        seen: Counter[int] = Counter()
        for rec in records(small_sim.root, info):
            ids = extract_seq(rec)
            assert len(ids) == 1, (stream, rec[:300])
            assert ids[0][0] == stream
            seen[ids[0][1]] += 1
        deleted = {n for a, b in info.deleted for n in range(a, b)}
        assert set(seen) | deleted == set(range(info.lines)), stream
        assert not set(seen) & deleted
        assert max(seen.values()) == 1, stream


def test_big_lines_survive(small_sim: SimulationReport) -> None:
    found = 0
    for info in small_sim.streams.values():
        if info.format not in ("cri", "docker"):
            continue
        for rec in records(small_sim.root, info):
            if b"kt_len=" in rec:
                size = int(rec.split(b"kt_len=")[1].split(b" ")[0])
                data = rec.split(b" data=")[1].split(b" kt_seq=")[0]
                assert len(data) == size > 16 * 1024
                found += 1
    assert found >= 3  # one per node at least


@given(
    st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True),
    st.integers(min_value=0, max_value=10**12),
    st.text(max_size=50),
)
def test_token_round_trip(stream: str, n: int, text: str) -> None:
    assert (stream, n) in extract_seq(f"{text} {seq_token(stream, n)}")
    assert (stream, n) in extract_seq(f'{{"x":1,"kt_seq":"{stream}:{n}"}}'.encode())
