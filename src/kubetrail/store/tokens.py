"""The token index: Bloom filters over message tokens and keyword-field tokens, one per row block.

Why Bloom filters: a needle search (a rare token, an IP, a pod uid) should read only the blocks
of rows that can contain it. A filter answers "certainly not here" for most blocks at a cost of a
few bytes per event, stored in the catalog.

Tokenization (the same rules build the index and turn a needle into lookups):

* text is ASCII-lower-cased; bytes are *alphanumeric* (``[a-z0-9]``), *minor separators*
  (``._:/@-``) or *breaks* (everything else: spaces, quotes, ``=``, ``,``, brackets, non-ASCII);
* a *run* is a maximal alphanumeric byte range; two runs are *joined* when exactly one minor
  separator lies between them;
* indexed *tokens* are every run and every joined group of two or three runs, as the raw text
  (``10.1.2.3:80`` gives ``10 1 2 3 80 10.1 1.2 2.3 3:80 10.1.2 1.2.3 2.3:80``), which makes IPs,
  dotted names and UUIDs selective without indexing every substring.

A needle found in a value at alphanumeric boundaries (token semantics) has only tokens the value
also has, so requiring all of them never drops a match. For substring semantics the needle's edge
runs may be partial; ``needle_tokens(..., substring=True)`` leaves them (and groups using them) out.

Hashing works on byte ranges of the Arrow string buffer: a polynomial prefix hash (wrapping uint64
numpy arithmetic, any range hashed in O(1)) with a splitmix64 finalizer, mixed with a hash of the
column name. It is deterministic across versions and processes, unlike a library's internal hash,
so stored filters stay valid; tokens are never materialized as strings on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "INDEX_VERSION",
    "TEXT_COLUMNS",
    "TOKEN_COLUMNS",
    "TokenIndex",
    "block_token_hashes",
    "build_token_index",
    "distinct",
    "hash_strings",
    "needle_hashes",
    "needle_tokens",
    "token_hashes",
    "tokens_of",
]

INDEX_VERSION = 1
TEXT_COLUMNS: tuple[str, ...] = ("message", "error.message")
# Keyword columns whose values are indexed with the same tokenizer, per column.
TOKEN_COLUMNS: tuple[str, ...] = (
    "event.dataset",
    "event.action",
    "kubernetes.namespace",
    "kubernetes.pod.name",
    "kubernetes.pod.uid",
    "kubernetes.container.name",
    "container.id",
    "container.image.name",
    "host.name",
    "source.ip",
    "user.name",
    "user_agent.original",
    "url.original",
    "kubernetes.audit.verb",
    "kubernetes.audit.user.username",
    "kubernetes.audit.sourceIPs",
    "kubernetes.audit.objectRef.resource",
    "kubernetes.audit.objectRef.namespace",
    "kubernetes.audit.objectRef.name",
    "kubernetes.audit.userAgent",
    "threat.indicator.value",
)
_MINOR_BYTES = b"._:/@-"
_CLASS = np.zeros(256, dtype=np.uint8)  # 0 break, 1 alphanumeric, 2 minor separator
_CLASS[list(b"abcdefghijklmnopqrstuvwxyz0123456789")] = 1
_CLASS[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")] = 1
_CLASS[list(_MINOR_BYTES)] = 2
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32
_P = np.uint64(0x100000001B3)  # odd: invertible modulo 2**64
_P_INV = np.uint64(pow(int(_P), -1, 2**64))
_LEN_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_BYTES = 4 << 20


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads the polynomial hash over all 64 bits."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = h ^ (h >> np.uint64(31))
    return out


class _Hasher:
    """Prefix hashes of one byte buffer: the hash of any range [s, e) in O(1), vectorized."""

    def __init__(self, body: np.ndarray) -> None:
        n = len(body)
        pows = np.full(n, _P, dtype=np.uint64)
        if n:
            pows[0] = 1
        np.cumprod(pows, out=pows)
        self.inv = np.full(n + 1, _P_INV, dtype=np.uint64)
        self.inv[0] = 1
        np.cumprod(self.inv, out=self.inv)
        self.prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum((body.astype(np.uint64) + np.uint64(1)) * pows, out=self.prefix[1:])

    def ranges(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        raw = (self.prefix[ends] - self.prefix[starts]) * self.inv[starts]
        return _mix(raw ^ ((ends - starts).astype(np.uint64) * _LEN_MIX))


def _string_chunks(values: pa.Array) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(offsets relative to the chunk, bytes) for runs of strings holding about _CHUNK_BYTES."""
    if values.type != pa.large_string():
        values = values.cast(pa.large_string())
    n = len(values)
    if n == 0:
        return
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + n + 1]
    buf = values.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    i = 0
    while i < n:
        j = int(np.searchsorted(offsets, offsets[i] + _CHUNK_BYTES, side="right")) - 1
        j = min(max(j, i + 1), n)
        base = int(offsets[i])
        yield offsets[i : j + 1] - base, data[base : int(offsets[j])]
        i = j


def hash_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of whole strings (nulls hash like the empty string; filter them first)."""
    if isinstance(values, pa.ChunkedArray):
        parts = [hash_strings(c) for c in values.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    out = [_Hasher(data).ranges(offs[:-1], offs[1:]) for offs, data in _string_chunks(values)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def distinct(hashes: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: numpy's hash-based ``unique`` is slow for uint64)."""
    if len(hashes) == 0:
        return hashes
    ordered = np.sort(hashes)
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _column_salt(column: str) -> np.uint64:
    return np.uint64(hash_strings(pa.array([column]))[0])


def _with_column(hashes: np.ndarray, column: str) -> np.ndarray:
    return _mix(hashes ^ _column_salt(column))


def _token_ranges(offsets: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges of every run and joined 2/3-run group in the strings of one chunk."""
    cls = _CLASS[data]
    n = len(data)
    alnum = cls == 1
    is_string_start = np.zeros(n + 1, dtype=bool)
    is_string_start[offsets[:-1][offsets[:-1] < n]] = True
    is_string_start = is_string_start[:n]
    prev_alnum = np.zeros(n, dtype=bool)
    prev_alnum[1:] = alnum[:-1]
    next_alnum = np.zeros(n, dtype=bool)
    next_alnum[:-1] = alnum[1:]
    is_string_end = np.zeros(n, dtype=bool)
    ends_idx = offsets[1:] - 1
    is_string_end[ends_idx[(ends_idx >= 0) & (ends_idx < n)]] = True
    starts = np.flatnonzero(alnum & (~prev_alnum | is_string_start))
    ends = np.flatnonzero(alnum & (~next_alnum | is_string_end)) + 1
    all_s, all_e = [starts], [ends]
    if len(starts) > 1:
        gap = ends[:-1]  # the byte right after run j
        safe_gap = np.minimum(gap, n - 1)
        joined = (
            (starts[1:] == gap + 1)
            & (cls[safe_gap] == 2)
            & ~is_string_start[safe_gap]
            & ~is_string_start[starts[1:]]
        )
        all_s.append(starts[:-1][joined])
        all_e.append(ends[1:][joined])
        both = joined[:-1] & joined[1:]
        all_s.append(starts[:-2][both])
        all_e.append(ends[2:][both])
    return np.concatenate(all_s), np.concatenate(all_e)


def token_hashes(values: pa.Array | pa.ChunkedArray, column: str) -> np.ndarray:
    """Distinct hashes of every token of a string (or list<string>) column, vectorized."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_flatten(values)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary
    values = pc.unique(values.drop_null())
    parts: list[np.ndarray] = []
    for offs, data in _string_chunks(values):
        lowered = _LOWER[data]
        s, e = _token_ranges(offs, lowered)
        if len(s):
            parts.append(distinct(_Hasher(lowered).ranges(s, e)))
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return distinct(_with_column(np.concatenate(parts), column))


def tokens_of(text: str, substring: bool = False) -> list[str]:
    """The tokens of one string (reference implementation; also turns needles into tokens).

    With ``substring=True`` the runs at the needle's alphanumeric edges may be partial in a
    matching value, so they and the groups containing them are left out.
    """
    raw = text.encode().lower()
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(raw):
        if _CLASS[raw[i]] == 1:
            j = i
            while j < len(raw) and _CLASS[raw[j]] == 1:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    usable = [True] * len(runs)
    if substring and runs:
        if runs[0][0] == 0:
            usable[0] = False
        if runs[-1][1] == len(raw):
            usable[-1] = False
    joined = [
        runs[k + 1][0] == runs[k][1] + 1 and raw[runs[k][1]] in _MINOR_BYTES for k in range(len(runs) - 1)
    ]
    out: set[str] = set()
    for k, (s, e) in enumerate(runs):
        if usable[k]:
            out.add(raw[s:e].decode())
        if k + 1 < len(runs) and joined[k] and usable[k] and usable[k + 1]:
            out.add(raw[s : runs[k + 1][1]].decode())
            if k + 2 < len(runs) and joined[k + 1] and usable[k + 2]:
                out.add(raw[s : runs[k + 2][1]].decode())
    return sorted(out)


def needle_tokens(needle: str, substring: bool = False) -> list[str]:
    """Tokens every value containing ``needle`` must have (see the module docstring)."""
    return tokens_of(needle, substring)


def needle_hashes(needles: Iterable[tuple[str, str]], substring: bool = False) -> np.ndarray:
    """Hashes to look up for (column, needle) pairs; columns that are not indexed give none."""
    indexed = set(TEXT_COLUMNS) | set(TOKEN_COLUMNS)
    parts: list[np.ndarray] = []
    for column, needle in needles:
        if column in indexed:
            tokens = needle_tokens(needle, substring)
            if tokens:
                parts.append(_with_column(hash_strings(pa.array(tokens, pa.string())), column))
    return distinct(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


@dataclass(frozen=True)
class TokenIndex:
    """A segment's token index: one Bloom filter per block of ``block_rows`` consecutive rows.

    Rows are counted in file order, so a block maps to a ``file_row_number`` range that DuckDB
    reads without decoding the rest of the file. ``block_rows == 0`` is a single filter for the
    whole segment (segments written before block filters). Each filter has ``sizes[b]`` bits (a
    multiple of 64; probes are taken modulo it, which for the older power-of-two filters is the
    same mask they were built with) and starts at bit ``sum(sizes[:b])`` of ``bits``.
    """

    bits: bytes
    sizes: np.ndarray
    k: int
    block_rows: int

    @property
    def num_blocks(self) -> int:
        return len(self.sizes)

    def matching_blocks(self, hashes: np.ndarray) -> np.ndarray:
        """Per block: may it contain every hash? (no false negatives)"""
        if len(hashes) == 0 or self.num_blocks == 0:
            return np.ones(self.num_blocks, dtype=bool)
        sizes = self.sizes.astype(np.uint64)
        starts = np.zeros(len(sizes), dtype=np.uint64)
        np.cumsum(sizes[:-1], out=starts[1:])
        h1 = hashes & np.uint64(0xFFFFFFFF)
        h2 = (hashes >> np.uint64(32)) | np.uint64(1)
        probes = (h1[:, None] + np.arange(self.k, dtype=np.uint64)[None, :] * h2[:, None]).ravel()
        pos = probes[None, :] % sizes[:, None] + starts[:, None]
        arr = np.frombuffer(self.bits, dtype=np.uint8)
        hit = (arr[(pos >> np.uint64(3)).astype(np.int64)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1
        matched: np.ndarray = np.asarray(hit.all(axis=1), dtype=bool)
        return matched

    def contains_all(self, hashes: np.ndarray) -> bool:
        return bool(self.matching_blocks(hashes).any())

    def row_ranges(self, matched: np.ndarray) -> list[tuple[int, int]]:
        """Inclusive ``file_row_number`` ranges of the matched blocks (adjacent blocks merged)."""
        if self.block_rows <= 0:
            raise ValueError("a whole-segment filter has no row blocks")
        padded = np.concatenate(([False], matched, [False])).astype(np.int8)
        edges = np.diff(padded)
        firsts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        b = self.block_rows
        return [(int(f) * b, int(e) * b - 1) for f, e in zip(firsts, ends, strict=True)]

    def sizes_bytes(self) -> bytes:
        return self.sizes.astype("<u8").tobytes()


def build_token_index(
    block_hashes: Sequence[np.ndarray], block_rows: int, bits_per_key: int = 16, k: int = 6
) -> TokenIndex:
    """Filters sized for each block's distinct hashes (about 0.1 % false positives at the defaults)."""
    sizes = np.array([max(64, -(-len(h) * bits_per_key // 64) * 64) for h in block_hashes], dtype=np.uint64)
    table = np.zeros(int(sizes.sum()), dtype=bool)
    start = 0
    probes = np.arange(k, dtype=np.uint64)
    for hashes, size in zip(block_hashes, sizes, strict=True):
        if len(hashes):
            h1 = hashes & np.uint64(0xFFFFFFFF)
            h2 = (hashes >> np.uint64(32)) | np.uint64(1)
            pos = (h1[:, None] + probes[None, :] * h2[:, None]).ravel() % size
            table[pos.astype(np.int64) + start] = True
        start += int(size)
    return TokenIndex(np.packbits(table, bitorder="little").tobytes(), sizes, k, block_rows)


def block_token_hashes(
    table: pa.Table, block_rows: int, columns: Sequence[str] | None = None
) -> list[np.ndarray]:
    """Distinct (column, token) hashes of each block of ``block_rows`` rows, in row order."""
    wanted = [c for c in (columns or (*TEXT_COLUMNS, *TOKEN_COLUMNS)) if c in table.column_names]
    blocks = []
    for start in range(0, max(table.num_rows, 1), block_rows):
        part = table.slice(start, block_rows).select(wanted)
        hashes = [token_hashes(part.column(c), c) for c in wanted]
        hashes = [h for h in hashes if len(h)]
        blocks.append(distinct(np.concatenate(hashes)) if hashes else np.zeros(0, dtype=np.uint64))
    return blocks
