"""Rotation the way the real writers do it, and the file I/O of the simulator.

- kubelet (``containerLogMaxSize`` / ``containerLogMaxFiles``): when ``0.log`` has grown past the
  size, rename it to ``0.log.<YYYYMMDD-HHMMSS>`` (or copy + truncate in copytruncate mode); rotated
  files except the newest are gzipped to ``0.log.<ts>.gz``; at most ``max_files`` files are kept,
  the current one included.
- kube-apiserver (lumberjack, ``--audit-log-maxsize``/``maxbackup``/``compress``): before a write
  that would take ``audit.log`` past the size, rename it to ``audit-<YYYY-MM-DDTHH-MM-SS.mmm>.log``
  (UTC), optionally gzip backups, keep ``maxbackup`` of them.
- docker json-file (``max-size``/``max-file``): ``<id>-json.log`` -> ``<id>-json.log.1`` -> ``.2`` ...

Gzip output is deterministic (no name, mtime 0), like Go's ``compress/gzip`` writer.
"""

from __future__ import annotations

import gzip
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from kubetrail.simulate.arrowtext import slice_bytes, unit_sizes
from kubetrail.simulate.timefmt import NS

__all__ = [
    "AUDIT_ROTATED_RE",
    "KUBELET_ROTATED_RE",
    "WriteResult",
    "WrittenFile",
    "audit_rotated_name",
    "kubelet_rotated_name",
    "segments",
    "write_audit_log",
    "write_docker_log",
    "write_kubelet_log",
    "write_plain",
]

KUBELET_ROTATED_RE = re.compile(r"^(?P<restart>\d+)\.log\.(?P<ts>\d{8}-\d{6})(?P<gz>\.gz)?$")
AUDIT_ROTATED_RE = re.compile(r"^audit-(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3})\.log(?P<gz>\.gz)?$")
GZIP_LEVEL = 1


@dataclass
class WrittenFile:
    path: Path
    lines: int
    bytes: int


@dataclass
class WriteResult:
    files: list[WrittenFile] = field(default_factory=list)
    deleted_units: list[tuple[int, int]] = field(default_factory=list)  # [start, end) unit ranges removed


def kubelet_rotated_name(base: str, ts_ns: int) -> str:
    """``0.log`` -> ``0.log.20260101-120000`` (Go layout ``20060102-150405``)."""
    return f"{base}.{time.strftime('%Y%m%d-%H%M%S', time.gmtime(ts_ns // NS))}"


def audit_rotated_name(ts_ns: int, stem: str = "audit", ext: str = ".log") -> str:
    """lumberjack's backup name: ``audit-2026-01-01T12-00-00.000.log``."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(ts_ns // NS))
    return f"{stem}-{stamp}.{(ts_ns % NS) // 1_000_000:03d}{ext}"


def segments(sizes: np.ndarray, max_bytes: int, *, before: bool) -> list[tuple[int, int]]:
    """Cut units into files. ``before``: a file never exceeds ``max_bytes`` (lumberjack); otherwise the
    file is rotated once it has grown past ``max_bytes`` (kubelet's periodic check)."""
    n = len(sizes)
    cum = np.cumsum(sizes)
    out: list[tuple[int, int]] = []
    start, base = 0, 0
    while start < n:
        if before:
            end = int(np.searchsorted(cum, base + max_bytes, side="right"))
            end = max(end, start + 1)
        else:
            end = int(np.searchsorted(cum, base + max_bytes, side="left")) + 1
        end = min(end, n)
        out.append((start, end))
        base = int(cum[end - 1])
        start = end
    return out or [(0, 0)]


def _write(path: Path, units: pa.Array, start: int, end: int, compress: bool = False) -> WrittenFile:
    """Write units ``start..end`` (Arrow values ending with ``\\n``) as one file in one write."""
    data: bytes | memoryview = slice_bytes(units, start, end)
    if compress:
        data = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb", buffering=0) as f:
        f.write(data)
    return WrittenFile(path, end - start, len(data) if isinstance(data, bytes) else data.nbytes)


def write_plain(path: Path, units: pa.Array) -> WriteResult:
    return WriteResult([_write(path, units, 0, len(units))])


def _unique_names(times: list[int], name: object) -> list[str]:
    names: list[str] = []
    for t in times:
        candidate = name(t)  # type: ignore[operator]
        while names and candidate <= names[-1]:
            t += NS
            candidate = name(t)  # type: ignore[operator]
        names.append(candidate)
    return names


def write_kubelet_log(
    path: Path, units: pa.Array, ts_ns: np.ndarray, max_bytes: int, max_files: int
) -> WriteResult:
    """``path`` is ``.../<restart>.log``; rotated siblings are named and compressed as kubelet does."""
    sizes = unit_sizes(units)
    segs = segments(sizes, max_bytes, before=False)
    result = WriteResult()
    rotated = segs[:-1]
    times = [int(ts_ns[s_next[0]]) for s_next in segs[1:]]
    names = _unique_names(times, lambda t: kubelet_rotated_name(path.name, t))
    keep_rotated = max_files - 1
    for k, ((a, b), name) in enumerate(zip(rotated, names, strict=True)):
        age = len(rotated) - 1 - k  # 0 = newest rotated file
        if age >= keep_rotated:
            result.deleted_units.append((a, b))
            continue
        gz = age > 0
        result.files.append(_write(path.with_name(name + (".gz" if gz else "")), units, a, b, compress=gz))
    a, b = segs[-1]
    result.files.append(_write(path, units, a, b))
    return result


def write_audit_log(
    path: Path, units: pa.Array, ts_ns: np.ndarray, max_bytes: int, max_backups: int, compress: bool
) -> WriteResult:
    sizes = unit_sizes(units)
    segs = segments(sizes, max_bytes, before=True)
    result = WriteResult()
    rotated = segs[:-1]
    times = [int(ts_ns[s_next[0]]) for s_next in segs[1:]]
    names = _unique_names(times, lambda t: audit_rotated_name(t, path.stem, path.suffix))
    for k, ((a, b), name) in enumerate(zip(rotated, names, strict=True)):
        if len(rotated) - 1 - k >= max_backups:
            result.deleted_units.append((a, b))
            continue
        result.files.append(_write(path.with_name(name + (".gz" if compress else "")), units, a, b, compress))
    a, b = segs[-1]
    result.files.append(_write(path, units, a, b))
    return result


def write_docker_log(path: Path, units: pa.Array, max_bytes: int, max_files: int) -> WriteResult:
    sizes = unit_sizes(units)
    segs = segments(sizes, max_bytes, before=False)
    result = WriteResult()
    for k, (a, b) in enumerate(segs):
        age = len(segs) - 1 - k  # 0 = current file
        if age >= max_files:
            result.deleted_units.append((a, b))
            continue
        target = path if age == 0 else path.with_name(f"{path.name}.{age}")
        result.files.append(_write(target, units, a, b))
    return result
