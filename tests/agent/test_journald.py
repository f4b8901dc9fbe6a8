"""journald: cursor extraction, the command line, the bounded spool, and crash recovery of the spool.

A fake ``journalctl`` (``tests/agent/fake_journalctl.py``) stands in for journald: this container has
no systemd. The end-to-end no-loss check with kill -9 is in ``test_fault.py``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from kubetrail.agent.checkpoints import CheckpointStore
from kubetrail.agent.config import AgentConfig
from kubetrail.agent.journald import JournaldSource, last_cursor
from kubetrail.agent.metrics import Metrics
from kubetrail.agent.tailer import FileTail, Pending
from kubetrail.chunk import Chunk

HERE = Path(__file__).resolve().parent


def entry(n: int) -> bytes:
    return (
        json.dumps({"__CURSOR": f"s=fake;i={n:x}", "MESSAGE": f"kt_seq=journal:{n} hello"}).encode() + b"\n"
    )


def source(
    tmp: Path, journal: Path, **jcfg: object
) -> tuple[JournaldSource, list[tuple[Chunk, Pending, FileTail | None]]]:
    wrapper = tmp / "journalctl"
    wrapper.write_text(
        f'#!/bin/sh\nKT_FAKE_JOURNAL={journal} exec {sys.executable} {HERE / "fake_journalctl.py"} "$@"\n'
    )
    wrapper.chmod(0o755)
    cfg = AgentConfig.model_validate(
        {
            "node_name": "n1",
            "data_dir": str(tmp / "data"),
            "sources": {"journald": {"journalctl": str(wrapper), **jcfg}},
        }
    )
    store = CheckpointStore(tmp / "data" / "checkpoints.db")
    sent: list[tuple[Chunk, Pending, FileTail | None]] = []
    return JournaldSource(cfg, store, Metrics(), lambda c, p, t: sent.append((c, p, t))), sent


def test_last_cursor() -> None:
    assert last_cursor(entry(1) + entry(2)) == "s=fake;i=2"
    assert last_cursor(b'{"__CURSOR" : "s=a;i=1", "MESSAGE": "x"}\n') == "s=a;i=1"
    assert last_cursor(entry(1) + b'{"__CURSOR": "partial') == "s=fake;i=1"
    assert last_cursor(b"no newline") is None


def test_command_resumes_after_the_spool_cursor(tmp_path: Path) -> None:
    src, _ = source(tmp_path, tmp_path / "j.jsonl")
    assert "--after-cursor" not in src.command() and "--no-tail" in src.command()
    src._append(entry(1) + entry(2))
    src.close()
    src2, _ = source(tmp_path, tmp_path / "j.jsonl")
    cmd = src2.command()
    assert cmd[cmd.index("--after-cursor") + 1] == "s=fake;i=2"


def test_partial_line_left_by_a_crash_is_dropped_and_not_resent_twice(tmp_path: Path) -> None:
    src, _ = source(tmp_path, tmp_path / "j.jsonl")
    src._append(entry(1) + entry(2))
    src.close()
    segment = next((tmp_path / "data" / "journald").glob("*.spool"))
    with segment.open("ab") as fh:
        fh.write(entry(3)[:20])  # killed mid-write
    src2, sent = source(tmp_path, tmp_path / "j.jsonl")
    assert src2.cursor == "s=fake;i=2"
    assert segment.read_bytes() == entry(1) + entry(2)
    src2.poll(True)
    assert b"".join(c.data for c, _, _ in sent) == entry(1) + entry(2)
    assert sent[0][0].origin.source == "journald" and sent[0][0].origin.offset == 0


def test_spool_is_bounded_and_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"".join(entry(n) for n in range(1, 3001)))
    src, sent = source(tmp_path, journal, spool_max_bytes=65536, spool_segment_bytes=8192)

    async def run() -> None:
        task = asyncio.create_task(src.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not src.space.is_set():
                break
        assert not src.space.is_set()  # full: journalctl is no longer read
        spooled = src.spool_end - src.segments[0][0]
        assert 65536 <= spooled < 65536 + 1024 * 1024
        # ship and acknowledge everything, then the spool drains and reading resumes (a deadline,
        # not a round count: on a loaded machine each round reads less of journalctl's output)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            src.poll(True)
            for _c, pending, tail in sent:
                if not pending.done:
                    pending.done = True
                    assert tail is not None
                    tail.advance()
            src.save()
            if src.tail.acked_offset == src.spool_end and src.cursor == "s=fake;i=bb8":
                break
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    src.close()
    data = b"".join(c.data for c, _, _ in sent)
    assert data == journal.read_bytes()
    assert len(list((tmp_path / "data" / "journald").glob("*.spool"))) <= 2
