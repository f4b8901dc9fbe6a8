"""Tailing: read files in large pieces, cut at the last newline, follow rotation, track acknowledgements.

Rotation cases (all keyed by :mod:`identity`):

* **rename** (kubelet ``0.log`` -> ``0.log.<ts>``, kube-apiserver ``audit.log`` -> ``audit-<ts>.log``):
  the open descriptor keeps reading the old inode until EOF and ``rotate_grace_secs`` of quiet, while the
  path's new file starts as a new stream. After a restart the renamed file is found by its identity.
* **copytruncate**: the tailer notices the shrink (size below its offset, or a changed first line), finds
  the copy beside the file (another inode with the *old* fingerprint) and continues the old stream from
  the copy at the same offset, so nothing is re-sent and nothing between the last read and the truncation
  is skipped. A copy seen before its original is truncated is held, never shipped as a new file.
* **deleted while open**: drained through the descriptor like a renamed file.
* compressed rotated files (``.gz`` ...) are ignored; if a file is compressed away before it was drained
  the loss is logged and counted (``bytes at risk`` warns ahead of it).

Offsets: ``read_offset`` is the next byte to read, ``acked_offset`` the first byte not yet acknowledged
by the server; only ``acked_offset`` is checkpointed.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetrail.agent.checkpoints import Checkpoint
from kubetrail.agent.identity import FINGERPRINT_BYTES, fingerprint, identify_fd
from kubetrail.chunk import FileIdentity

__all__ = [
    "INCOMPLETE_GZ_SECS",
    "TRUNCATED",
    "FileTail",
    "Pending",
    "Truncated",
    "cut_complete_lines",
    "is_compressed",
    "tail_start_offset",
]

log = logging.getLogger("kubetrail.agent.tailer")

_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".tmp", ".swp")


def is_compressed(path: str) -> bool:
    """Rotated files that were compressed (or are being written by the rotator) are never tailed."""
    return path.endswith(_COMPRESSED_SUFFIXES)


def cut_complete_lines(data: bytes, force: bool = False) -> int:
    """Length of the longest prefix of ``data`` that ends with a newline.

    Returns 0 when ``data`` holds no newline (a partial last line waits for its end), unless ``force``
    (the partial line is already ``max_line_bytes`` long): then all of it is taken.
    """
    last = data.rfind(b"\n")
    if last >= 0:
        return last + 1
    return len(data) if force else 0


def tail_start_offset(fd: int, size: int) -> int:
    """Offset just after the last newline before ``size`` (where ``read_from: tail`` starts)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


class Truncated:
    """Marker: the file was truncated and rewritten since the last read."""


TRUNCATED = Truncated()
# How long a .gz that ends before its end-of-stream marker is waited for (its compressor still writing).
INCOMPLETE_GZ_SECS = 60.0


@dataclass(slots=True, eq=False)
class Pending:
    """One shipped range of a stream; ``done`` once the server acknowledged it."""

    end: int
    size: int
    done: bool = False


@dataclass(slots=True, eq=False)
class FileTail:
    """One stream being read: a file (or, after copytruncate, the copy that continues it)."""

    path: str
    fd: int
    identity: FileIdentity
    source: str
    read_offset: int
    acked_offset: int
    dev: int = 0
    inode: int = 0
    size: int = 0
    rotated_at: float | None = None  # when the path stopped naming this file (rename/delete/copy)
    last_data_at: float = field(default_factory=time.monotonic)
    next_check: float = 0.0  # monotonic time of the next rotation/truncation check at EOF
    closed: bool = False
    pending: deque[Pending] = field(default_factory=deque)
    metadata: dict[str, str] = field(default_factory=dict)
    meta_version: int = -1
    excluded: bool = False
    container_key: str | None = None
    checkpoint_dirty: bool = False

    @property
    def key(self) -> str:
        return self.identity.key()

    def checkpoint(self, now: float) -> Checkpoint:
        ident = self.identity
        return Checkpoint(
            ident.key(), ident.dev, ident.inode, ident.fingerprint, self.path, self.acked_offset, now, now
        )

    def read(self, max_bytes: int, max_line_bytes: int) -> tuple[int, bytes, bool] | Truncated | None:
        """Next run of whole lines: (offset, data, forced); None at EOF or with only a partial line.

        Returns ``TRUNCATED`` when the file's first line changed under us (copytruncate and rewrite):
        the bytes just read may belong to the new content and are dropped, never shipped as the old.
        """
        data = os.pread(self.fd, max_bytes, self.read_offset)
        if not data:
            return None
        if fingerprint(os.pread(self.fd, FINGERPRINT_BYTES, 0)) != self.identity.fingerprint:
            return TRUNCATED
        forced = False
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            # No newline in this read: wait for the line's end, unless it is already too long to keep.
            if len(data) < min(max_line_bytes, max_bytes):
                return None
            cut, forced = len(data), True
        offset = self.read_offset
        self.read_offset += cut
        self.last_data_at = time.monotonic()
        return offset, data if cut == len(data) else data[:cut], forced

    def track(self, end: int, size: int) -> Pending:
        pending = Pending(end, size)
        self.pending.append(pending)
        return pending

    def advance(self) -> None:
        """Move ``acked_offset`` over the acknowledged prefix of the pending ranges (acks may reorder)."""
        moved = False
        while self.pending and self.pending[0].done:
            self.acked_offset = self.pending.popleft().end
            moved = True
        if moved:
            self.checkpoint_dirty = True

    def unacked_bytes(self) -> int:
        return self.read_offset - self.acked_offset

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def truncated(self) -> bool:
        """Copytruncate check: the file shrank below our offset or its first line changed."""
        try:
            st = os.fstat(self.fd)
            if st.st_size < self.read_offset:
                return True
            head = os.pread(self.fd, FINGERPRINT_BYTES, 0)
        except OSError:
            return False
        return fingerprint(head) != self.identity.fingerprint

    def path_moved(self) -> bool:
        """True when the path no longer names this inode (renamed or deleted)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != (self.dev, self.inode)


def find_copy(tail: FileTail, is_candidate: Callable[[str], bool]) -> tuple[str, int, int, int] | None:
    """A copytruncate copy of ``tail`` beside it: (path, fd, dev, inode) of a file with its fingerprint."""
    directory = os.path.dirname(tail.path)
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for name in sorted(names, reverse=True):
        path = os.path.join(directory, name)
        if path == tail.path or not is_candidate(path) or is_compressed(path):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            ident = identify_fd(fd)
        except OSError:
            os.close(fd)
            continue
        if ident is not None and ident.fingerprint == tail.identity.fingerprint and st.st_ino != tail.inode:
            return path, fd, st.st_dev, st.st_ino
        os.close(fd)
    return None


def open_file(path: str) -> tuple[int, os.stat_result] | OSError:
    """Open for reading without following into devices/FIFOs; errors are returned, not raised."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        return exc
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return exc
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        os.close(fd)
        return OSError(errno.EINVAL, "not a regular file", path)
    return fd, st


@dataclass(slots=True, eq=False)
class GzipTail(FileTail):
    """The rest of a stream whose rotated file was compressed before it was drained.

    gzip keeps the bytes, so the stream continues from its checkpoint with the same identity and
    offsets (the server's event ids stay the same); the rotator only changed how the bytes are stored.
    """

    carry: bytes = b""
    _gz: Any = None
    incomplete_since: float | None = None

    def read(self, max_bytes: int, max_line_bytes: int) -> tuple[int, bytes, bool] | Truncated | None:
        try:
            if self._gz is None:
                self._gz = gzip.open(self.path, "rb")  # noqa: SIM115 - kept open, closed in close()
                self._gz.seek(self.read_offset)  # decompresses up to the checkpoint once
            more = self._gz.read(max(0, max_bytes - len(self.carry)))
        except EOFError:
            # The .gz ends before its end-of-stream marker: still being written, or cut short. Read it
            # again from ``read_offset`` later; keep the stream open (not "drained") for a while.
            if self._gz is not None:
                self._gz.close()
            self._gz, self.carry = None, b""
            now = time.monotonic()
            if self.incomplete_since is None:
                self.incomplete_since = now
            if now - self.incomplete_since < INCOMPLETE_GZ_SECS:
                self.last_data_at = now
            return None
        self.incomplete_since = None
        data = self.carry + more
        if not data:
            return None
        cut = data.rfind(b"\n") + 1
        forced = False
        if cut == 0:
            if len(data) < min(max_line_bytes, max_bytes) and len(data) == len(self.carry):
                self.carry = data
                return None
            cut, forced = len(data), len(data) >= min(max_line_bytes, max_bytes)
            if not forced:
                self.carry = data
                return None
        self.carry = data[cut:]
        offset = self.read_offset
        self.read_offset += cut
        self.last_data_at = time.monotonic()
        return offset, data[:cut], forced

    def truncated(self) -> bool:
        return False

    def path_moved(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._gz is not None:
                with contextlib.suppress(OSError):
                    self._gz.close()


def gzip_fingerprint(path: str) -> str | None:
    """Fingerprint of a gzip file's decompressed first line (which file it was before compression)."""
    try:
        with gzip.open(path, "rb") as fh:
            return fingerprint(fh.read(FINGERPRINT_BYTES))
    except (OSError, EOFError):
        return None


def gzip_size(path: str) -> int | None:
    """Uncompressed size of a gzip file from its trailer (mod 2**32, enough to compare with offsets)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little")
    except OSError:
        return None
