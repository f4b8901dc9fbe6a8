"""Tailing and rotation, in process: rename, copytruncate (with and without restarts), inode reuse,
deleted-while-open, read_from tail, fairness and bad files. Acknowledgements are given by hand, so the
tests can also check that checkpoints only cover acknowledged bytes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from kubetrail.agent import harvester as harvester_module
from kubetrail.agent.checkpoints import CheckpointStore
from kubetrail.agent.config import AgentConfig
from kubetrail.agent.discovery import Discovery
from kubetrail.agent.harvester import Harvester
from kubetrail.agent.metrics import Metrics
from kubetrail.agent.tailer import FileTail, Pending
from kubetrail.chunk import Chunk


@pytest.fixture(autouse=True)
def _check_eof_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harvester_module, "_EOF_CHECK_SECS", 0.0)


class Rig:
    """A harvester with a recording ``emit`` and manual acknowledgement."""

    def __init__(self, tmp: Path, **cfg: object) -> None:
        self.tmp = tmp
        self.logs = tmp / "pods" / "ns_pod_uid" / "app"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cfg = AgentConfig.model_validate(
            {
                "node_name": "n1",
                "data_dir": str(tmp / "data"),
                "rotate_grace_secs": 0.0,
                "read_bytes": 262144,
                **cfg,
            }
        )
        self.metrics = Metrics()
        self.sent: list[tuple[Chunk, Pending, FileTail | None]] = []
        self.discovery = Discovery({"container": [str(tmp / "pods/*/*/*.log")]}, use_inotify=False)
        self.open()

    def open(self) -> None:
        self.store = CheckpointStore(self.tmp / "data" / "checkpoints.db")
        self.harvester = Harvester(
            self.cfg, self.store, lambda c, p, t: self.sent.append((c, p, t)), self.metrics
        )

    def restart(self) -> None:
        """Like kill -9: unacknowledged state is lost, only the checkpoint DB survives."""
        self.harvester.close()
        self.store.close()
        self.sent.clear()
        self.open()

    def cycle(self, ack: bool = True) -> None:
        for _ in range(3):
            self.harvester.sync(self.discovery.scan())
            while self.harvester.poll():
                pass
            if ack:
                self.ack()
        self.harvester.save_checkpoints()

    def ack(self) -> None:
        for _chunk, pending, tail in self.sent:
            if not pending.done:
                pending.done = True
                if tail is not None:
                    tail.advance()
                    if tail.closed:
                        self.harvester.note_closed(tail)

    def lines(self) -> list[bytes]:
        """Distinct events (stream, offset) -> line, in order received."""
        seen: dict[tuple[str, int], bytes] = {}
        for chunk, _, _ in self.sent:
            pos = 0
            for line in chunk.data.splitlines(keepends=True):
                assert chunk.origin.file is not None
                seen.setdefault((chunk.origin.file.key(), chunk.origin.offset + pos), line)
                pos += len(line)
        return list(seen.values())


def write(path: Path, start: int, count: int) -> None:
    with path.open("ab") as fh:
        fh.write(
            b"".join(
                f"2026-01-01T00:00:00Z stdout F line {i}\n".encode() for i in range(start, start + count)
            )
        )


def numbers(lines: list[bytes]) -> list[int]:
    return sorted(int(line.split()[-1]) for line in lines)


def test_rename_rotation_drains_old_file_then_follows_new(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 100)
    rig.cycle()
    write(log, 100, 50)  # written before the rename, not yet read
    log.rename(rig.logs / "0.log.20260101-000000")
    write(log, 150, 70)
    rig.cycle()
    assert numbers(rig.lines()) == list(range(220))
    assert all(c.origin.path == str(log) for c, _, _ in rig.sent)  # rotated file keeps its live name
    assert len(rig.harvester.tails) == 1  # the renamed file was drained and closed
    assert rig.metrics.rotations.labels(kind="rename")._value.get() == 1


def test_copytruncate_continues_from_the_copy_without_resend_or_skip(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 100)
    rig.cycle()
    write(log, 100, 40)  # not read before the truncation: only the copy has these lines
    shutil.copyfile(log, rig.logs / "0.log.20260101-000000")
    rig.harvester.sync(rig.discovery.scan())  # the copy is seen before the truncation: held, not shipped
    assert len(rig.harvester.tails) == 1
    os.truncate(log, 0)
    write(log, 140, 60)
    rig.cycle()
    got = numbers(rig.lines())
    assert got == list(range(200)), (len(got), sorted(set(range(200)) - set(got))[:5])
    assert rig.metrics.rotations.labels(kind="copytruncate")._value.get() == 1


def test_copytruncate_while_agent_was_down_resumes_stream_from_copy(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 100)
    rig.cycle()
    write(log, 100, 40)
    rig.restart()
    shutil.copyfile(log, rig.logs / "0.log.20260101-000000")
    os.truncate(log, 0)
    write(log, 140, 60)
    rig.cycle()
    assert numbers(rig.lines()) == list(range(100, 200))  # 0..99 were acknowledged before the restart


def test_restart_resends_only_unacknowledged_bytes(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 100)
    rig.cycle()
    write(log, 100, 100)
    rig.cycle(ack=False)  # read and "sent", never acknowledged
    rig.restart()
    rig.cycle()
    assert numbers(rig.lines()) == list(range(100, 200))


def test_rename_rotation_while_down_and_inode_reuse(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 10)
    rig.cycle()
    write(log, 10, 10)
    rig.restart()
    log.rename(rig.logs / "0.log.20260101-000000")
    write(log, 20, 5)
    rig.cycle()
    assert numbers(rig.lines()) == list(range(10, 25))
    # a checkpoint whose (dev, inode) matches but whose fingerprint does not is another file (inode reuse)
    st = log.stat()
    cp = next(iter(rig.harvester.checkpoints.values()))
    assert cp.fingerprint  # sanity
    rig.store.save(
        [type(cp)(f"{st.st_dev}:{st.st_ino}:0000", st.st_dev, st.st_ino, "0000", str(log), 10**6, 0, 0)]
    )
    rig.restart()
    write(log, 25, 5)
    rig.cycle()
    assert numbers(rig.lines()) == [25, 26, 27, 28, 29]


def test_deleted_while_open_is_drained(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 10)
    rig.cycle()
    write(log, 10, 10)
    log.unlink()
    rig.cycle()
    assert numbers(rig.lines()) == list(range(20))
    assert rig.harvester.tails == {}


def test_read_from_tail_on_first_start_only(tmp_path: Path) -> None:
    old = tmp_path / "pods" / "ns_pod_uid" / "app" / "0.log"
    old.parent.mkdir(parents=True)
    write(old, 0, 10)
    os.utime(old, (time.time() - 60, time.time() - 60))
    rig = Rig(tmp_path, read_from="tail")
    rig.cycle()
    assert rig.lines() == []
    write(old, 10, 3)
    newer = tmp_path / "pods" / "ns_pod2_uid2" / "app"
    newer.mkdir(parents=True)
    write(newer / "0.log", 100, 2)  # appears after start: read from its head
    rig.cycle()
    assert numbers(rig.lines()) == [10, 11, 12, 100, 101]


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    with log.open("ab") as fh:
        fh.write(b"2026 stdout F line 0\n2026 stdout P line 1 starts")
    rig.cycle()
    assert numbers(rig.lines()) == [0]
    with log.open("ab") as fh:
        fh.write(b" and ends 1\n")
    rig.cycle()
    assert rig.lines()[-1] == b"2026 stdout P line 1 starts and ends 1\n"


def test_binary_file_without_newlines_is_cut_at_max_line_bytes(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_line_bytes=4096)
    (rig.logs / "0.log").write_bytes(os.urandom(300_000).replace(b"\n", b"x"))
    rig.cycle()
    assert sum(len(c.data) for c, _, _ in rig.sent) == 300_000  # shipped in pieces, nothing dropped
    assert rig.metrics.long_lines._value.get() == 2


def test_fast_file_does_not_starve_others(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    big = rig.logs / "0.log"
    write(big, 0, 200_000)  # ~7 MB
    small_dir = tmp_path / "pods" / "ns_small_u" / "app"
    small_dir.mkdir(parents=True)
    write(small_dir / "0.log", 0, 5)
    rig.harvester.sync(rig.discovery.scan())
    rig.harvester.poll()  # one fair pass: the small file is read although the big one has more
    paths = {c.origin.path for c, _, _ in rig.sent}
    assert str(small_dir / "0.log") in paths


def test_fifo_symlink_loop_and_dangling_link_are_reported_not_fatal(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    os.mkfifo(rig.logs / "1.log")
    os.symlink(rig.logs / "2.log", rig.logs / "2.log.loop")
    os.symlink(rig.logs / "2.log.loop", rig.logs / "2.log")
    os.symlink(tmp_path / "missing", rig.logs / "3.log")
    write(rig.logs / "0.log", 0, 3)
    rig.cycle()
    assert numbers(rig.lines()) == [0, 1, 2]
    reasons = {
        s.labels["reason"]
        for m in rig.metrics.registry.collect()
        for s in m.samples
        if "file_errors" in s.name
    }
    assert reasons & {"OSError", "FileNotFoundError"}


def test_checkpoint_disk_full_is_reported_and_recovered(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 10)
    rig.cycle()
    pages = rig.store._db.execute("PRAGMA page_count").fetchone()[0]
    rig.store._db.execute(f"PRAGMA max_page_count={pages}")  # what SQLite sees on a full disk: SQLITE_FULL
    for i in range(50):
        sub = tmp_path / "pods" / f"ns_p{i}_u{i}" / "app"
        sub.mkdir(parents=True)
        write(sub / "0.log", 0, 2)
    rig.cycle()
    assert rig.metrics.checkpoint_errors._value.get() >= 1
    assert rig.store.last_error and "full" in rig.store.last_error
    rig.store._db.execute("PRAGMA max_page_count=1073741823")
    rig.harvester.save_checkpoints()
    assert rig.store.last_error is None
    assert rig.store.count() == 51


def test_checkpoints_of_vanished_files_are_collected(tmp_path: Path) -> None:
    rig = Rig(tmp_path, checkpoint_gc_secs=0)
    log = rig.logs / "0.log"
    write(log, 0, 10)
    rig.cycle()
    assert rig.store.count() == 1
    log.unlink()
    rig.cycle()
    rig.harvester.save_checkpoints(force=True)
    assert rig.store.count() == 0


PERMISSION_PROBE = """
import json, sys
from pathlib import Path
from kubetrail.agent.checkpoints import CheckpointStore
from kubetrail.agent.config import AgentConfig
from kubetrail.agent.discovery import Discovery
from kubetrail.agent.harvester import Harvester
from kubetrail.agent.metrics import Metrics
root = Path(sys.argv[1])
cfg = AgentConfig.model_validate({"node_name": "n1", "data_dir": sys.argv[2]})
sent = []
metrics = Metrics()
store = CheckpointStore(Path(sys.argv[2]) / "c.db")
h = Harvester(cfg, store, lambda c, p, t: sent.append(c.origin.path), metrics)
h.sync(Discovery({"container": [str(root / "*/*/*.log")]}, use_inotify=False).scan())
h.poll()
h.sync(h.paths)  # a second look must not log the same problem again
samples = [s for m in metrics.registry.collect() for s in m.samples]
errors = {s.labels["reason"]: s.value for s in samples if s.name == "kubetrail_agent_file_errors_total"}
print(json.dumps({"sent": sorted(set(sent)), "errors": errors}))
"""


def test_permission_denied_is_reported_once_and_other_files_still_ship(tmp_path: Path) -> None:
    """The probe runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (setpriv), like an agent that lacks
    them: a 0600 file of another user must be reported and must not stop the other files."""
    import json
    import subprocess
    import sys

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the file-permission capabilities")
    pods = tmp_path / "pods"
    ok = pods / "ns_ok_u1" / "app" / "0.log"
    secret = pods / "ns_secret_u2" / "app" / "0.log"
    for path in (ok, secret):
        path.parent.mkdir(parents=True)
        write(path, 0, 3)
    os.chown(secret, 65534, 65534)
    secret.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir()
    probe = [sys.executable, "-c", PERMISSION_PROBE, str(pods), str(data)]
    done = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *probe],
        capture_output=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = json.loads(done.stdout)
    assert result["sent"] == [str(ok)]
    assert result["errors"] == {"PermissionError": 2.0}  # counted every look, logged once
    assert done.stderr.decode().count("Permission denied") <= 1


def test_rotated_file_compressed_while_down_is_finished_from_the_gz(tmp_path: Path) -> None:
    import gzip

    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 100)
    rig.cycle()
    write(log, 100, 50)  # never read before the agent died
    rig.restart()
    rotated = rig.logs / "0.log.20260101-000000"
    log.rename(rotated)
    write(log, 150, 10)
    with rotated.open("rb") as src, gzip.open(str(rotated) + ".gz", "wb") as dst:
        dst.write(src.read())
    rotated.unlink()
    rig.cycle()
    assert numbers(rig.lines()) == list(range(100, 160))
    first_stream = {
        c.origin.file.key()
        for c, _, _ in rig.sent
        if c.data.startswith(b"2026-01-01T00:00:00Z stdout F line 100\n")
    }
    assert len(first_stream) == 1  # same identity as before the compression: event ids unchanged
    assert rig.metrics.rotations.labels(kind="compressed-before-drained")._value.get() == 1
    rig.cycle()
    assert numbers(rig.lines()) == list(range(100, 160))  # finished once, not re-read


@pytest.mark.parametrize("visible_bytes", [10, 40, "two thirds"])
def test_a_gz_seen_while_being_written_is_judged_again_when_complete(
    tmp_path: Path, visible_bytes: int | str
) -> None:
    """A rotated file compressed before it was drained, its .gz first seen half-written.

    A half-written .gz has no readable first line (gzip writes the header at once, the deflate output
    at close) or ends before its end-of-stream marker. Judging it then used to be final: its fingerprint
    was cached as unknown, so the stream was never finished from it and the unread end of the rotated
    file (the lines at the rotation boundary) was lost; a longer part crashed the read with EOFError."""
    import gzip

    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 3000)
    rig.cycle()
    write(log, 3000, 50)  # never read before the agent died
    rig.restart()
    rotated = rig.logs / "0.log.20260101-000000"
    log.rename(rotated)
    write(log, 5000, 10)
    full = gzip.compress(rotated.read_bytes(), compresslevel=1)
    cut = len(full) * 2 // 3 if visible_bytes == "two thirds" else int(visible_bytes)
    gz = Path(str(rotated) + ".gz")
    gz.write_bytes(full[:cut])
    rotated.unlink()
    rig.cycle()  # must neither crash nor give the stream up
    with gz.open("ab") as fh:  # the compressor finishes
        fh.write(full[cut:])
    rig.cycle()
    got = set(numbers(rig.lines()))
    assert set(range(3000, 3050)) <= got
    assert set(range(5000, 5010)) <= got


def test_a_new_file_reusing_a_drained_files_inode_is_read(tmp_path: Path) -> None:
    """Rotators free and reuse inodes within seconds, and copies often have the very same size: a file
    on a drained file's inode is a new file unless its size and mtime are the drained file's too."""
    rig = Rig(tmp_path)
    log = rig.logs / "0.log"
    write(log, 0, 10)
    rig.cycle()
    rig.harvester.close()
    rig.harvester.tails.clear()
    st = os.stat(log)
    # as if an earlier drained rotated file had lived on this inode, with the same size, another mtime
    rig.harvester.finished[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns - 1)
    rig.sent.clear()
    rig.harvester.sync(rig.discovery.scan())
    assert len(rig.harvester.tails) == 1
    rig.harvester.finished[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns)  # this file: skipped
    rig.harvester.tails.clear()
    rig.harvester.sync(rig.discovery.scan())
    assert not rig.harvester.tails
