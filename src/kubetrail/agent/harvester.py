"""The set of tailed files: opening, identity, resume from checkpoints, rotation, fairness, GC.

Discovery hands over the paths it matched (``sync``); the app calls ``poll`` whenever inotify or the
poll timer says something may have changed. ``poll`` reads every open stream in turn (a few large reads
each, so one fast file cannot starve the others) while the shipper's in-flight budget allows, and
checks streams at EOF for rotation. Chunks go to ``emit`` with a :class:`Pending` the shipper marks done
on acknowledgement; ``save_checkpoints`` persists acknowledged offsets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

from kubetrail.agent.checkpoints import Checkpoint, CheckpointStore
from kubetrail.agent.config import AgentConfig
from kubetrail.agent.discovery import live_name
from kubetrail.agent.identity import identify_fd
from kubetrail.agent.metrics import Metrics
from kubetrail.agent.ratelimit import RateLimiter
from kubetrail.agent.tailer import (
    FileTail,
    GzipTail,
    Pending,
    Truncated,
    find_copy,
    gzip_fingerprint,
    gzip_size,
    is_compressed,
    open_file,
    tail_start_offset,
)
from kubetrail.chunk import Chunk, FileIdentity, Origin

__all__ = ["Emit", "Harvester", "MetadataLookup"]

log = logging.getLogger("kubetrail.agent")

# (chunk, pending, tail) -> None; the shipper owns the chunk until it is acknowledged.
Emit = Callable[[Chunk, Pending, "FileTail | None"], None]
# (path, source) -> (metadata, excluded, container key for rate limits); ``version`` bumps on changes.
MetadataLookup = Callable[[str, str], tuple[dict[str, str], bool, str | None]]

_READS_PER_TURN = 4
_EOF_CHECK_SECS = 0.5


class Harvester:
    def __init__(
        self,
        cfg: AgentConfig,
        store: CheckpointStore,
        emit: Emit,
        metrics: Metrics,
        metadata: MetadataLookup | None = None,
        metadata_version: Callable[[], int] = lambda: 0,
        budget_open: Callable[[], bool] = lambda: True,
        hold: Callable[[str, str], bool] = lambda path, source: False,
    ) -> None:
        self.cfg = cfg
        self.node = cfg.node_name
        self.store = store
        self.emit = emit
        self.metrics = metrics
        self.metadata = metadata
        self.metadata_version = metadata_version
        self.budget_open = budget_open
        self.hold = hold
        self.checkpoints: dict[str, Checkpoint] = store.load()
        self.first_start = store.fresh
        self.tails: dict[tuple[int, int], FileTail] = {}
        self.paths: dict[str, str] = {}  # discovered path -> source
        # drained rotated files: (dev, ino) -> (size, mtime_ns). Not the inode alone: rotators free and
        # reuse inodes within seconds, and rotated copies often have the very same size.
        self.finished: dict[tuple[int, int], tuple[int, int]] = {}
        self.finished_keys: set[str] = set()  # stream identities drained to the end of their file
        self.retired: list[FileTail] = []  # closed streams whose last chunks await acknowledgement
        self._unsaved: dict[str, Checkpoint] = {}
        # .gz (dev, ino) -> ((size, mtime_ns) when looked at, fingerprint, uncompressed size mod 2**32)
        self._gz_info: dict[tuple[int, int], tuple[tuple[int, int], str | None, int | None]] = {}
        self.warned: set[tuple[str, str]] = set()
        self.ratelimit = RateLimiter(cfg.rate_limit.lines_per_sec, cfg.rate_limit.burst_lines)
        self._started = time.time()
        self._last_gc = 0.0

    # ------------------------------------------------------------------ discovery
    def sync(self, paths: dict[str, str], rescan: bool = True) -> None:
        """Adopt the discovered paths: open new files, notice vanished ones."""
        self.paths = paths
        now = time.time()
        for path, source in paths.items():
            try:
                st = os.stat(path)
            except OSError as exc:
                self._warn_once(path, "stat", exc)
                continue
            key = (st.st_dev, st.st_ino)
            tail = self.tails.get(key)
            if tail is not None:
                if tail.path != path and not tail.closed:
                    tail.path = path  # renamed while open (rotation): keep draining under the new name
                    if tail.rotated_at is None:
                        tail.rotated_at = time.monotonic()
                        self.metrics.rotations.labels(kind="rename").inc()
                cp = self.checkpoints.get(tail.key)
                if cp is not None:
                    cp.seen = now
                continue
            if self.finished.get(key) == (st.st_size, st.st_mtime_ns):
                continue
            self._open(path, source, now)
        if rescan:
            self._adopt_compressed()

    def _adopt_compressed(self) -> None:
        """Finish streams whose rotated file was gzip'd before it was drained (e.g. while we were down).

        A checkpointed stream whose file is nowhere on disk any more is looked for among the ``.gz``
        files of its directory by fingerprint (of the decompressed first line); if the compressed size
        says bytes are left after the checkpoint, the stream continues from the ``.gz``."""
        active = {t.key for t in self.tails.values()}
        for cp in list(self.checkpoints.values()):
            if cp.key in active or cp.key in self.finished_keys:
                continue
            directory = os.path.dirname(cp.path)
            try:
                names = [n for n in os.listdir(directory) if n.endswith(".gz")]
            except OSError:
                continue
            for name in names:
                gz = os.path.join(directory, name)
                try:
                    st = os.stat(gz)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in self.tails or self.finished.get(key) == (st.st_size, st.st_mtime_ns):
                    continue
                if os.path.exists(gz[: -len(".gz")]):
                    # Still being compressed: gzip/logrotate/kubelet remove the original only after the
                    # .gz is complete. A half-written .gz has no readable first line yet and a bogus
                    # trailer size; judged now, the stream would be never (or wrongly) finished from it.
                    continue
                stamp = (st.st_size, st.st_mtime_ns)
                info = self._gz_info.get(key)
                if info is None or info[0] != stamp:  # read first line and size once per version
                    info = self._gz_info[key] = (stamp, gzip_fingerprint(gz), gzip_size(gz))
                _, fp, size = info
                if fp != cp.fingerprint or size is None:
                    continue
                if size == cp.offset % 2**32:
                    self.finished[key] = (st.st_size, st.st_mtime_ns)  # shipped before it was compressed
                    self.finished_keys.add(cp.key)
                    continue
                self._open_gz(cp, gz, st)
                break

    def _open_gz(self, cp: Checkpoint, gz: str, st: os.stat_result) -> None:
        ident = FileIdentity(cp.dev, cp.inode, cp.fingerprint)
        source = self.paths.get(live_name(cp.path), "container" if "/pods/" in cp.path else "file")
        self.tails[(st.st_dev, st.st_ino)] = GzipTail(
            path=gz,
            fd=-1,
            identity=ident,
            source=source,
            read_offset=cp.offset,
            acked_offset=cp.offset,
            dev=st.st_dev,
            inode=st.st_ino,
            size=cp.offset,
            rotated_at=time.monotonic(),
        )
        self.metrics.rotations.labels(kind="compressed-before-drained").inc()
        log.warning(
            "rotated file was compressed before it was drained: finishing it from the .gz",
            extra={"path": gz, "offset": cp.offset},
        )

    def _warn_once(self, path: str, what: str, exc: BaseException) -> None:
        reason = type(exc).__name__
        self.metrics.file_errors.labels(reason=reason).inc()
        if (path, reason) not in self.warned:
            self.warned.add((path, reason))
            log.warning("cannot %s %s: %s", what, path, exc, extra={"path": path, "reason": reason})

    def _open(self, path: str, source: str, now: float) -> None:
        opened = open_file(path)
        if isinstance(opened, OSError):
            self._warn_once(path, "open", opened)
            return
        fd, st = opened
        try:
            ident = identify_fd(fd)
        except OSError as exc:
            os.close(fd)
            self._warn_once(path, "read", exc)
            return
        if ident is None:
            os.close(fd)  # no complete first line yet: nothing to ship, look again on the next poll
            return
        key = (st.st_dev, st.st_ino)
        directory = os.path.dirname(path)
        cp = self.checkpoints.get(ident.key())
        identity = ident
        if cp is not None:
            offset = cp.offset
            if offset > st.st_size:
                log.warning("file shorter than its checkpoint, reading from 0", extra={"path": path})
                offset = 0
        else:
            active = [t for t in self.tails.values() if not t.closed]
            if any(
                t.identity.fingerprint == ident.fingerprint and os.path.dirname(t.path) == directory
                for t in active
            ):
                os.close(fd)  # a copytruncate copy of a live stream: held until the original truncates
                return
            active_keys = {t.key for t in active}
            orphan = next(
                (
                    c
                    for c in self.checkpoints.values()
                    if c.fingerprint == ident.fingerprint
                    and os.path.dirname(c.path) == directory
                    and c.key not in active_keys
                    and c.inode != st.st_ino
                ),
                None,
            )
            if orphan is not None:
                # Copytruncate happened while we were down: the copy continues the checkpointed stream.
                identity = replace(ident, dev=orphan.dev, inode=orphan.inode)
                offset = min(orphan.offset, st.st_size)
                log.info("continuing a copytruncated stream from its copy", extra={"path": path})
            elif self.first_start and self.cfg.read_from == "tail" and os.stat(path).st_mtime < self._started:
                offset = tail_start_offset(fd, st.st_size)
            else:
                offset = 0
        tail = FileTail(
            path=path,
            fd=fd,
            identity=identity,
            source=source,
            read_offset=offset,
            acked_offset=offset,
            dev=st.st_dev,
            inode=st.st_ino,
            size=st.st_size,
            rotated_at=time.monotonic() if live_name(path) != path else None,
        )
        if cp is None:
            tail.checkpoint_dirty = True
        self.tails[key] = tail
        self.metrics.files_open.set(len(self.tails))
        log.debug("tailing", extra={"path": path, "offset": offset, "identity": identity.key()})

    # ------------------------------------------------------------------ reading
    def poll(self) -> int:
        """One fair pass over all streams; returns bytes read (0 means everything is at EOF or paused)."""
        total = 0
        now = time.monotonic()
        version = self.metadata_version()
        for key, tail in list(self.tails.items()):
            if tail.closed or (tail.meta_version == -1 and self.hold(tail.path, tail.source)):
                continue
            got_eof = False
            for _ in range(_READS_PER_TURN):
                if not self.budget_open():
                    return total
                try:
                    got = tail.read(self.cfg.read_bytes, self.cfg.max_line_bytes)
                except OSError as exc:
                    self._warn_once(tail.path, "read", exc)
                    got = None
                if got is None:
                    got_eof = True
                    break
                if isinstance(got, Truncated):
                    self._copytruncated(key, tail, now)
                    break
                offset, data, forced = got
                total += len(data)
                if forced:
                    self.metrics.long_lines.inc()
                self._ship(tail, offset, data, version)
            if got_eof:
                self._at_eof(key, tail, now)
        return total

    def _ship(self, tail: FileTail, offset: int, data: bytes, version: int) -> None:
        self.metrics.bytes_read.labels(source=tail.source).inc(len(data))
        if tail.meta_version != version and self.metadata is not None:
            tail.metadata, tail.excluded, tail.container_key = self.metadata(tail.path, tail.source)
            tail.meta_version = version
        end = offset + len(data)
        pending = tail.track(end, len(data))
        if tail.excluded:
            self.metrics.excluded_bytes.inc(len(data))
            pending.done = True
            tail.advance()
            return
        if tail.container_key is not None and self.ratelimit.enabled:
            keep = self.ratelimit.admit(tail.container_key, data)
            if keep < len(data):
                dropped = data[keep:].count(b"\n")
                self.metrics.rate_limited_lines.inc(dropped)
                self.ratelimit.note_dropped(tail.container_key, dropped, tail.metadata, tail.path)
                if keep == 0:
                    pending.done = True
                    tail.advance()
                    return
                data = data[:keep]
        origin = Origin(
            node=self.node,
            source=tail.source,
            path=live_name(tail.path),
            file=tail.identity,
            offset=offset,
            metadata=tail.metadata,
        )
        self.emit(Chunk(origin, data), pending, tail)

    def _at_eof(self, key: tuple[int, int], tail: FileTail, now: float) -> None:
        if now < tail.next_check:
            return  # rotation checks cost 4 syscalls; an idle file is looked at twice a second
        tail.next_check = now + _EOF_CHECK_SECS
        with contextlib.suppress(OSError):
            tail.size = os.fstat(tail.fd).st_size
        if tail.rotated_at is None:
            if tail.path_moved():
                tail.rotated_at = now
                self.metrics.rotations.labels(kind="rename").inc()
            elif tail.truncated():
                self._copytruncated(key, tail, now)
                return
        if (
            tail.rotated_at is not None
            and now - max(tail.rotated_at, tail.last_data_at) >= self.cfg.rotate_grace_secs
        ):
            self.finished[key] = _stamp(tail)
            tail.close()
            self.finished_keys.add(tail.key)
            del self.tails[key]
            self.retired.append(tail)
            self.metrics.files_open.set(len(self.tails))

    def _copytruncated(self, key: tuple[int, int], tail: FileTail, now: float) -> None:
        self.metrics.rotations.labels(kind="copytruncate").inc()
        # any plain file beside it may be the copy (discovery may not have rescanned since it appeared)
        found = find_copy(tail, lambda p: not is_compressed(p))
        del self.tails[key]
        if found is None:
            lost = max(0, tail.size - tail.read_offset)
            self.metrics.unrecovered_truncations.inc()
            log.warning(
                "file truncated and no rotated copy found: bytes after the last read may be lost",
                extra={"path": tail.path, "offset": tail.read_offset, "bytes_at_risk": lost},
            )
            tail.close()
            self.retired.append(tail)
            return
        path, fd, dev, inode = found
        os.close(tail.fd)
        tail.fd, tail.dev, tail.inode, tail.rotated_at = fd, dev, inode, now
        tail.path = path
        self.tails[(dev, inode)] = tail  # same stream identity, now read from the copy
        self.finished.pop(key, None)
        log.info("copytruncate: continuing the stream from its copy", extra={"path": path})

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoints(self, force: bool = False) -> None:
        now = time.time()
        rows: list[Checkpoint] = []
        for tail in list(self.tails.values()) + self.retired:
            if tail.checkpoint_dirty:
                cp = tail.checkpoint(now)
                rows.append(cp)
                self.checkpoints[cp.key] = cp
                tail.checkpoint_dirty = False
        self.retired = [t for t in self.retired if t.pending or t.checkpoint_dirty]
        delete: list[str] = []
        if now - self._last_gc > 60 or force:
            delete = self._gc(now)
            self._last_gc = now
        if self._unsaved:
            fresh = {r.key for r in rows}
            rows += [r for k, r in self._unsaved.items() if k not in fresh]
            self._unsaved = {}
        if (rows or delete) and not self.store.save(rows, delete):
            self.metrics.checkpoint_errors.inc()
            for row in rows:
                self._unsaved[row.key] = row  # try again next time
            log.error("cannot write checkpoints", extra={"error": self.store.last_error})
        for key in delete:
            self.checkpoints.pop(key, None)
            self.finished_keys.discard(key)
        self.metrics.checkpoint_age.set(now - self.store.last_save)

    def note_closed(self, tail: FileTail) -> None:
        """An acknowledgement reached a stream already closed: make sure its checkpoint is saved."""
        if tail not in self.retired:
            self.retired.append(tail)

    def _gc(self, now: float) -> list[str]:
        """Checkpoints of files gone from disk for ``checkpoint_gc_secs``."""
        on_disk: set[tuple[int, int]] = set()
        for path in self.paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            on_disk.add((st.st_dev, st.st_ino))
        for key in list(self.finished):
            if key not in on_disk:
                del self.finished[key]
        if len(self._gz_info) > 10_000:
            self._gz_info.clear()
        live = {(t.dev, t.inode) for t in self.tails.values()} | set(self.finished)
        delete = []
        active = {t.key for t in self.tails.values()}
        for cp in self.checkpoints.values():
            if cp.key in active:
                continue
            if (cp.dev, cp.inode) in on_disk or (cp.dev, cp.inode) in live:
                cp.seen = now
            elif now - cp.seen >= self.cfg.checkpoint_gc_secs:
                delete.append(cp.key)
        return delete

    # ------------------------------------------------------------------ observability
    def lag(self) -> dict[str, int]:
        out = {}
        for tail in self.tails.values():
            out[tail.path] = max(0, tail.size - tail.acked_offset)
        return out

    def bytes_at_risk(self) -> int:
        """Unshipped bytes in files already rotated away (the next rotation may compress or delete them)."""
        return sum(max(0, t.size - t.acked_offset) for t in self.tails.values() if t.rotated_at is not None)

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()


def _stamp(tail: FileTail) -> tuple[int, int]:
    """(size, mtime_ns) of a drained file, so a new file that reuses its inode is not taken for it."""
    try:
        st = os.fstat(tail.fd) if tail.fd >= 0 else os.stat(tail.path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)
