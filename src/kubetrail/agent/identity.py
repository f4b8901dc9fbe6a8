"""File identity: (device, inode) plus a fingerprint of the file's first line.

(dev, inode) alone is not enough: inodes are reused as soon as a file is deleted, and a copytruncate
rotation keeps the inode while replacing the content. The fingerprint is a hash of the first line (at
most ``FINGERPRINT_BYTES``), which never changes while a file only grows, changes when a file is
truncated and rewritten, and is shared by a copytruncate copy and its original — which is exactly how
the tailer recognises such a copy and continues the old stream from it instead of re-sending it.

A file with neither a newline nor ``FINGERPRINT_BYTES`` bytes yet has no identity: there is no whole
line to ship anyway, so the tailer simply waits.
"""

from __future__ import annotations

import hashlib
import os

from kubetrail.chunk import FileIdentity

__all__ = ["FINGERPRINT_BYTES", "fingerprint", "identify_fd"]

FINGERPRINT_BYTES = 256


def fingerprint(head: bytes) -> str | None:
    """Fingerprint of a file that starts with ``head`` (its first bytes), or None if too short yet."""
    newline = head.find(b"\n", 0, FINGERPRINT_BYTES)
    if newline >= 0:
        sample = head[: newline + 1]
    elif len(head) >= FINGERPRINT_BYTES:
        sample = head[:FINGERPRINT_BYTES]
    else:
        return None
    return hashlib.blake2b(sample, digest_size=8).hexdigest()


def identify_fd(fd: int) -> FileIdentity | None:
    """Identity of an open file, or None while it has no complete first line."""
    st = os.fstat(fd)
    fp = fingerprint(os.pread(fd, FINGERPRINT_BYTES, 0))
    if fp is None:
        return None
    return FileIdentity(dev=st.st_dev, inode=st.st_ino, fingerprint=fp)
