"""journald: ``journalctl -o json --follow`` into a bounded on-disk spool, shipped like a file.

Why a spool: the journal is read as a stream, but shipping needs stable byte offsets (``event.id`` is
origin + offset) and must survive kill -9 without loss or doubles. journalctl's output is appended to
spool segments in ``data_dir/journald`` (``<start offset>.spool``, whole lines only); the tailer ships
from the spool with a fixed synthetic identity, checkpoints the acknowledged offset, and deletes
segments once acknowledged. On restart the cursor of the last complete line *in the spool* is where
journalctl resumes (``--after-cursor``), so an entry is in the spool exactly once whatever moment the
agent died at. The spool is bounded (``spool_max_bytes``): when full, reading journalctl's pipe pauses
and journald itself buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from kubetrail.agent.checkpoints import CheckpointStore
from kubetrail.agent.config import AgentConfig
from kubetrail.agent.harvester import Emit
from kubetrail.agent.metrics import Metrics
from kubetrail.agent.tailer import FileTail
from kubetrail.chunk import Chunk, FileIdentity, Origin

__all__ = ["JournaldSource", "last_cursor"]

log = logging.getLogger("kubetrail.agent.journald")

_CURSOR = re.compile(rb'"__CURSOR"\s*:\s*"([^"]*)"')
_PIPE_READ = 1024 * 1024


def last_cursor(data: bytes) -> str | None:
    """``__CURSOR`` of the last complete line of ``data`` (None if there is none)."""
    end = data.rfind(b"\n")
    if end < 0:
        return None
    start = data.rfind(b"\n", 0, end) + 1
    m = _CURSOR.search(data, start, end)
    return m.group(1).decode() if m else None


def _die_with_parent() -> None:
    """journalctl must not outlive a kill -9'ed agent (it would hold the cursor position nowhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


class JournaldSource:
    def __init__(self, cfg: AgentConfig, store: CheckpointStore, metrics: Metrics, emit: Emit) -> None:
        self.cfg = cfg
        self.jcfg = cfg.sources.journald
        self.store = store
        self.metrics = metrics
        self.emit = emit
        self.dir = Path(cfg.data_dir) / "journald"
        self.dir.mkdir(parents=True, exist_ok=True)
        stream = store.get("journald.stream")
        if stream is None:
            stream = uuid.uuid4().hex[:16]
            store.put("journald.stream", stream)
        acked = int(store.get("journald.acked") or 0)
        self.identity = FileIdentity(dev=0, inode=0, fingerprint=f"journald-{stream}")
        self.segments: list[tuple[int, Path]] = sorted(
            (int(p.stem), p) for p in self.dir.glob("*.spool") if p.stem.isdigit()
        )
        self.spool_end = acked
        self.cursor = store.get("journald.cursor")
        self._recover()
        start = max(acked, self.segments[0][0]) if self.segments else self.spool_end
        self.tail = FileTail(
            path="journald",
            fd=-1,
            identity=self.identity,
            source="journald",
            read_offset=start,
            acked_offset=start,
        )
        self._saved_acked = acked
        self._fds: dict[Path, int] = {}
        self._writer: int | None = None
        self._writer_start = -1
        self.process: asyncio.subprocess.Process | None = None
        self.space = asyncio.Event()
        self.space.set()
        self.available = shutil.which(self.jcfg.journalctl) is not None

    def _recover(self) -> None:
        """Drop a partial last line (killed mid-write) and find the spool's last cursor."""
        if not self.segments:
            return
        start, path = self.segments[-1]
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            os.truncate(path, keep)
            data = data[:keep]
        if keep == 0 and len(self.segments) > 1:
            path.unlink()
            self.segments.pop()
            start, path = self.segments[-1]
            data = path.read_bytes()
        self.spool_end = start + len(data)
        cursor = last_cursor(data)
        if cursor is not None:
            self.cursor = cursor

    # ------------------------------------------------------------------ journalctl -> spool
    def command(self) -> list[str]:
        cmd = [self.jcfg.journalctl, "-o", "json", "--follow", "--all"]
        if self.jcfg.directory is not None:
            cmd += ["-D", str(self.jcfg.directory)]
        if self.cursor:
            cmd += ["--after-cursor", self.cursor, "--no-tail"]
        elif self.cfg.read_from == "tail":
            cmd += ["--lines", "0"]
        else:
            cmd += ["--no-tail"]
        return cmd

    async def run(self) -> None:
        if not self.available:
            log.info("journalctl not found: journald source off", extra={"journalctl": self.jcfg.journalctl})
            return
        backoff = 1.0
        while True:
            started = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("journald reader failed")
            if time.monotonic() - started > 30:
                backoff = 1.0
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _run_once(self) -> None:
        cmd = self.command()
        self.process = proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        assert proc.stdout is not None and proc.stderr is not None
        partial = b""
        try:
            while True:
                await self.space.wait()
                block = await proc.stdout.read(_PIPE_READ)
                if not block:
                    break
                data = partial + block
                cut = data.rfind(b"\n") + 1
                partial = data[cut:]
                if cut:
                    self._append(data[:cut])
        finally:
            if proc.returncode is None:
                proc.kill()
            err = (await proc.stderr.read(4000)).decode(errors="replace").strip()
            code = await proc.wait()
            log.warning("journalctl exited", extra={"code": code, "stderr": err, "cmd": " ".join(cmd)})

    def _append(self, data: bytes) -> None:
        if self._writer is None or self.spool_end - self._writer_start >= self.jcfg.spool_segment_bytes:
            if self._writer is not None:
                os.close(self._writer)
            if (
                self.segments
                and self.segments[-1][0] + self.segments[-1][1].stat().st_size == self.spool_end
                and (self.spool_end - self.segments[-1][0] < self.jcfg.spool_segment_bytes)
            ):
                start, path = self.segments[-1]
            else:
                start, path = self.spool_end, self.dir / f"{self.spool_end:020d}.spool"
                self.segments.append((start, path))
            self._writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._writer_start = start
        os.write(self._writer, data)
        self.spool_end += len(data)
        self.cursor = last_cursor(data) or self.cursor
        self._update_space()

    def _update_space(self) -> None:
        spooled = self.spool_end - (self.segments[0][0] if self.segments else self.spool_end)
        self.metrics.journald_spool_bytes.set(spooled)
        if spooled >= self.jcfg.spool_max_bytes:
            self.space.clear()
        else:
            self.space.set()

    # ------------------------------------------------------------------ spool -> shipper
    def poll(self, budget_open: bool) -> int:
        tail = self.tail
        total = 0
        while budget_open and tail.read_offset < self.spool_end:
            seg = self._segment_for(tail.read_offset)
            if seg is None:
                break
            start, path = seg
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(fd, self.cfg.read_bytes, tail.read_offset - start)
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                break
            data = data[:cut]
            offset = tail.read_offset
            tail.read_offset += cut
            total += cut
            self.metrics.bytes_read.labels(source="journald").inc(cut)
            origin = Origin(
                node=self.cfg.node_name, source="journald", path="journald", file=self.identity, offset=offset
            )
            self.emit(Chunk(origin, data), tail.track(offset + cut, cut), tail)
            if total >= 4 * self.cfg.read_bytes:
                break
        return total

    def _segment_for(self, offset: int) -> tuple[int, Path] | None:
        for start, path in reversed(self.segments):
            if start <= offset:
                return start, path
        return None

    def save(self) -> None:
        """Persist the acknowledged offset and cursor, then delete fully acknowledged segments."""
        acked = self.tail.acked_offset
        if acked == self._saved_acked:
            return
        if not (
            self.store.put("journald.acked", str(acked))
            and self.store.put("journald.cursor", self.cursor or "")
        ):
            self.metrics.checkpoint_errors.inc()
            return
        self._saved_acked = acked
        while len(self.segments) > 1 and self.segments[1][0] <= acked:
            _start, path = self.segments.pop(0)
            fd = self._fds.pop(path, None)
            if fd is not None:
                os.close(fd)
            path.unlink(missing_ok=True)
        self._update_space()

    def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
        for fd in self._fds.values():
            os.close(fd)
        if self._writer is not None:
            os.close(self._writer)
