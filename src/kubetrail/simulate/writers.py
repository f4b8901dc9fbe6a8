"""Encode lines into the on-disk formats: CRI (with P/F partials), docker json-file (16 KiB partials),
``journalctl -o json`` export, and plain files. Pure functions from lines to text units; ``rotation``
cuts units into files and does the I/O.

A *unit* is the text of one logical line in the target format: one physical line, or several when the
runtime split it (CRI ``P`` ... ``F``, docker partial ``log`` values without ``\\n``). Files are only
cut between units.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from json.encoder import encode_basestring

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.simulate.arrowtext import join, to_arrow, unit_sizes

__all__ = [
    "CRI_MAX_BYTES",
    "DOCKER_MAX_BYTES",
    "add_seq",
    "encode_cri",
    "encode_docker",
    "encode_journal",
    "to_bytes",
]

CRI_MAX_BYTES = 16 * 1024  # containerd's default max_container_log_line_size
DOCKER_MAX_BYTES = 16 * 1024  # docker's log copier buffer


def to_bytes(text: str) -> bytes:
    """Lone surrogates stand for raw non-UTF-8 bytes (``surrogateescape``), as applications can print them."""
    return text.encode("utf-8", "surrogateescape")


def add_seq(msgs: Sequence[str], json: np.ndarray, stream: str, first: int = 0) -> list[str]:
    """Append the sequence id to each message: a ``"kt_seq"`` key in JSON objects, else a trailing token."""
    out = []
    for i, (m, j) in enumerate(zip(msgs, json.tolist(), strict=True), start=first):
        out.append(f'{m[:-1]},"kt_seq":"{stream}:{i}"}}' if j else f"{m} kt_seq={stream}:{i}")
    return out


def _cut(msg: str, points: Sequence[int]) -> list[str]:
    """Split ``msg`` at byte offsets (a cut inside a UTF-8 sequence keeps the raw bytes via surrogates)."""
    if msg.isascii():
        bounds = [0, *points, len(msg)]
        return [msg[a:b] for a, b in itertools.pairwise(bounds)]
    raw = to_bytes(msg)
    bounds = [0, *points, len(raw)]
    return [raw[a:b].decode("utf-8", "surrogateescape") for a, b in itertools.pairwise(bounds)]


def _byte_len(msg: str) -> int:
    return len(msg) if msg.isascii() else len(to_bytes(msg))


def split_points(msg: str, max_bytes: int, random_cut: int | None) -> list[int]:
    """Byte offsets where the runtime cuts ``msg``: every ``max_bytes``, plus one random cut if given."""
    size = _byte_len(msg)
    points = set(range(max_bytes, size, max_bytes))
    if random_cut is not None and 0 < random_cut < size:
        points.add(random_cut)
    return sorted(points)


def encode_cri(
    times: pa.Array, stderr: np.ndarray, msgs: pa.Array, rng: np.random.Generator, split_prob: float
) -> pa.Array:
    """``<RFC3339Nano> <stdout|stderr> <P|F> <msg>\\n`` units, assembled with Arrow kernels.

    Lines over 16 KiB and a random share (``split_prob``) become ``P`` pieces closed by an ``F`` piece;
    only those few are handled one by one.
    """
    tags = pc.if_else(pa.array(stderr, type=pa.bool_()), pa.scalar(" stderr F "), pa.scalar(" stdout F "))
    units = join(times, tags, msgs, "\n")
    n = len(msgs)
    sizes = unit_sizes(msgs)
    special = set(np.flatnonzero(sizes > CRI_MAX_BYTES).tolist())
    rand_idx = np.flatnonzero(rng.random(n) < split_prob).tolist() if split_prob > 0 else []
    cuts = rng.random(len(rand_idx)).tolist()
    random_cut = {i: max(1, int(c * int(sizes[i]))) for i, c in zip(rand_idx, cuts, strict=True)}
    special.update(rand_idx)
    if not special:
        return units
    binary = units.type == pa.binary()
    parts: list[pa.Array] = []
    prev = 0
    flags = stderr.tolist()
    for i in sorted(special):
        raw = msgs[i].as_py()
        msg = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        pieces = _cut(msg, split_points(msg, CRI_MAX_BYTES, random_cut.get(i)))
        stream = "stderr" if flags[i] else "stdout"
        t = times[i].as_py()
        last = len(pieces) - 1
        text = "".join(f"{t} {stream} {'F' if k == last else 'P'} {p}\n" for k, p in enumerate(pieces))
        parts.append(units.slice(prev, i - prev))
        parts.append(pa.array([to_bytes(text)], pa.binary()) if binary else to_arrow([text]))
        prev = i + 1
    parts.append(units.slice(prev))
    if any(p.type == pa.binary() for p in parts):
        parts = [p.cast(pa.binary()) for p in parts]
    return pa.concat_arrays(parts)


def _docker_escape(text: str) -> str:
    s = encode_basestring(text)
    if "<" in s or ">" in s or "&" in s:  # moby's JSON writer escapes these like Go's HTML-safe encoder
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s


def encode_docker(times: Sequence[str], stderr: np.ndarray, msgs: Sequence[str]) -> list[str]:
    """docker json-file: ``{"log":"msg\\n","stream":"stdout","time":"..."}``; >16 KiB lines split, only the
    last piece ends with ``\\n``. Raw non-UTF-8 bytes become U+FFFD as docker writes them."""
    streams = ('","stream":"stdout","time":"', '","stream":"stderr","time":"')
    flags = stderr.astype(np.int8).tolist()
    units = []
    for t, e, m in zip(times, flags, msgs, strict=True):
        if not m.isascii():
            m = to_bytes(m).decode("utf-8", "replace")
        if len(m) <= DOCKER_MAX_BYTES // 4 or _byte_len(m) <= DOCKER_MAX_BYTES:
            units.append(f'{{"log":{_docker_escape(m + chr(10))[:-1]}{streams[e]}{t}"}}\n')
            continue
        pieces = _cut(m, split_points(m, DOCKER_MAX_BYTES, None))
        pieces[-1] += "\n"
        units.append("".join(f'{{"log":{_docker_escape(p)[:-1]}{streams[e]}{t}"}}\n' for p in pieces))
    return units


def encode_journal(
    ts_ns: np.ndarray,
    seqnums: np.ndarray,
    msgs: Sequence[str],
    seq_ids: Sequence[str],
    priorities: Sequence[str],
    *,
    unit: str,
    identifier: str,
    pid: int,
    exe: str,
    hostname: str,
    boot_id: str,
    machine_id: str,
    boot_ns: int,
) -> list[str]:
    """``journalctl -o json`` records. A message that is not valid UTF-8 is written as a byte array."""
    seqnum_id = machine_id[::-1]
    real = (ts_ns // 1000).tolist()
    mono = ((ts_ns - boot_ns) // 1000).tolist()
    out = []
    for r, mo, sn, m, q, p in zip(real, mono, seqnums.tolist(), msgs, seq_ids, priorities, strict=True):
        xor = (r * 2654435761 ^ sn * 40503) & 0xFFFFFFFFFFFFFFFF
        cursor = f"s={seqnum_id};i={sn:x};b={boot_id};m={mo:x};t={r:x};x={xor:016x}"
        try:
            m.encode("utf-8")
            message = encode_basestring(m)
        except UnicodeEncodeError:
            message = "[" + ",".join(str(b) for b in to_bytes(m)) + "]"
        out.append(
            f'{{"__CURSOR":"{cursor}","__REALTIME_TIMESTAMP":"{r}","__MONOTONIC_TIMESTAMP":"{mo}",'
            f'"_BOOT_ID":"{boot_id}","_TRANSPORT":"stdout","PRIORITY":"{p}","SYSLOG_FACILITY":"3",'
            f'"_UID":"0","_GID":"0","_MACHINE_ID":"{machine_id}","_HOSTNAME":"{hostname}",'
            f'"SYSLOG_IDENTIFIER":"{identifier}","_PID":"{pid}","_COMM":"{identifier}","_EXE":"{exe}",'
            f'"_SYSTEMD_CGROUP":"/system.slice/{unit}","_SYSTEMD_UNIT":"{unit}","KT_SEQ":"{q}",'
            f'"MESSAGE":{message}}}\n'
        )
    return out
