"""Tiny readers for the simulator's output, independent of ``kubetrail.formats`` on purpose."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

CRI_RE = re.compile(rb"^(\S+) (stdout|stderr) ([PF]) (.*)$", re.DOTALL)


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def cri_records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(stream, message) per logical line: ``P`` pieces joined until the ``F`` piece, per stream."""
    pending: dict[bytes, list[bytes]] = {}
    for line in data.split(b"\n")[:-1]:
        m = CRI_RE.match(line)
        assert m, line[:200]
        _, stream, tag, msg = m.groups()
        pending.setdefault(stream, []).append(msg)
        if tag == b"F":
            yield stream, b"".join(pending.pop(stream))
    assert not pending, "partial line without its final piece"


def docker_records(data: bytes) -> Iterator[tuple[str, str]]:
    pending: dict[str, list[str]] = {}
    for line in data.split(b"\n")[:-1]:
        obj = json.loads(line)
        pending.setdefault(obj["stream"], []).append(obj["log"])
        if obj["log"].endswith("\n"):
            yield obj["stream"], "".join(pending.pop(obj["stream"]))[:-1]
    assert not pending
