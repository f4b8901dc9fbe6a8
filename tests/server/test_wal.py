from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.errors import StorageError
from kubetrail.server.wal import WriteAheadLog


def _open(path: Path, **kw: int) -> WriteAheadLog:
    wal = WriteAheadLog(path, **kw)
    wal.open()
    return wal


async def _append_many(wal: WriteAheadLog, n: int, size: int = 100) -> list[int]:
    futures = [wal.append("agent", "agent/v1", bytes([i % 256]) * size)[1] for i in range(n)]
    return list(await asyncio.gather(*futures))


def test_append_replay_round_trip(tmp_path: Path) -> None:
    wal = _open(tmp_path)
    seqs = asyncio.run(_append_many(wal, 50))
    assert seqs == list(range(1, 51))
    wal.close_sync()
    again = _open(tmp_path)
    records = list(again.replay())
    assert [r.seq for r in records] == seqs
    assert records[3].data == bytes([3]) * 100
    assert records[0].source == "agent" and records[0].codec == "agent/v1"
    assert again.next_seq == 51


def test_group_commit_batches_fsyncs(tmp_path: Path) -> None:
    wal = _open(tmp_path)
    asyncio.run(_append_many(wal, 500))
    assert wal.fsyncs < 50  # concurrent appends share fsyncs
    wal.close_sync()


def test_segments_roll_and_checkpoint_truncates(tmp_path: Path) -> None:
    wal = _open(tmp_path, segment_bytes=2000)

    async def go() -> None:
        for _ in range(10):
            await _append_many(wal, 5)

    asyncio.run(go())
    assert wal.segment_count > 3
    segs_before = len(list(tmp_path.glob("*.wal")))
    deleted = wal.checkpoint(30)
    assert deleted > 0
    assert len(list(tmp_path.glob("*.wal"))) == segs_before - deleted
    wal.close_sync()
    again = _open(tmp_path)
    assert [r.seq for r in again.replay()] == list(range(31, 51))


def test_torn_tail_is_cut_and_corrupt_record_skipped(tmp_path: Path) -> None:
    wal = _open(tmp_path)
    asyncio.run(_append_many(wal, 10))
    wal.close_sync()
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    size = seg.stat().st_size
    with open(seg, "r+b") as fh:  # a crash in the middle of writing the last record
        fh.truncate(size - 7)
    again = _open(tmp_path)
    assert [r.seq for r in again.replay()] == list(range(1, 10))
    assert again.torn_bytes_truncated > 0
    asyncio.run(_append_many(again, 3))
    again.close_sync()
    # flip a byte inside the first record of the first segment: it fails its CRC
    first = sorted(tmp_path.glob("*.wal"))[0]
    raw = bytearray(first.read_bytes())
    raw[30] ^= 0xFF
    first.write_bytes(bytes(raw))
    third = _open(tmp_path)
    seqs = [r.seq for r in third.replay()]
    assert third.corrupt_records == 1
    assert 1 not in seqs and seqs[-3:] == [10, 11, 12]


def test_append_after_close_raises(tmp_path: Path) -> None:
    wal = _open(tmp_path)
    wal.close_sync()

    async def go() -> None:
        wal.append("a", "b", b"x")

    with pytest.raises(StorageError):
        asyncio.run(go())


def test_write_failure_fails_waiters(tmp_path: Path) -> None:
    wal = _open(tmp_path)
    assert wal._file is not None
    os.close(wal._file)  # simulate an I/O error on the next write
    wal._file = os.open(os.devnull, os.O_RDONLY)

    async def go() -> None:
        with pytest.raises(StorageError):
            await wal.append_wait("a", "b", b"x")

    asyncio.run(go())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8), st.integers(0, 400))
def test_fuzz_corrupted_segment_never_crashes(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]], cut: int
) -> None:
    path = tmp_path_factory.mktemp("walfuzz")
    wal = _open(path)
    asyncio.run(_append_many(wal, 30, size=50))
    wal.close_sync()
    seg = sorted(path.glob("*.wal"))[0]
    raw = bytearray(seg.read_bytes())
    for pos, value in flips:
        raw[pos % len(raw)] = value
    seg.write_bytes(bytes(raw[: max(0, len(raw) - cut)]))
    again = _open(path)
    records = list(again.replay())
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(r.data in {bytes([i % 256]) * 50 for i in range(30)} for r in records)  # only intact records
    asyncio.run(_append_many(again, 2))  # and the log keeps working
    again.close_sync()
