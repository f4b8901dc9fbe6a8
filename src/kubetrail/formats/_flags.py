"""Per-row parse problems, kept as boolean masks and folded into two columns at the end.

A row can have several problems (a truncated line that is also invalid UTF-8). ``event.parse_error``
gets every reason code, comma-separated, most serious first (``REASONS`` order; the same convention
as the container parsers); ``error.message`` joins every detail, each prefixed with its code.
Counts per reason feed the parser's ``stats``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["REASONS", "Flags"]

# Stable reason codes, most serious first. Documented in docs/formats.md.
REASONS: tuple[str, ...] = (
    "internal_error",  # the vectorized path failed; the raw line is kept
    "truncated",  # capped at a maximum size (container parsers' reassembly; not used by LineParser)
    "partial_timeout",  # container parsers: a partial line without its final piece, emitted
    "incomplete_line",  # unterminated line flushed, or the later rest of such a line
    "stream_gap",  # a chunk did not continue where the carried tail ended: the tail, emitted
    "line_too_long",  # cut at the parser's max_line_bytes
    "bad_json",  # JSON formats: the line is not JSON (fields salvaged where possible)
    "not_audit_event",  # JSON, but no audit Event / EventList / known cloud envelope
    "not_k8s_audit",  # a cloud audit envelope around something that is not Kubernetes
    "bad_format",  # line does not have the format's shape; kept whole as the message
    "bad_pri",  # syslog PRI out of range
    "bad_timestamp",  # timestamp present but impossible; @timestamp falls back to receive time
    "bad_field",  # a typed field (pid, code, priority, byte array) could not be converted
    "invalid_utf8",  # invalid sequences replaced by U+FFFD
    "nul_bytes",  # NUL bytes replaced by U+FFFD
    "empty_line",
)
_RANK = {reason: i for i, reason in enumerate(REASONS)}


class Flags:
    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows
        self._items: list[tuple[str, pa.BooleanArray, pa.Array]] = []

    def add(self, reason: str, mask: pa.Array | np.ndarray | None, detail: str | pa.Array) -> None:
        """Flag rows where ``mask`` is true (all rows when None); ``detail`` is a string or a column."""
        if mask is None:
            mask_arr = pa.array(np.ones(self.num_rows, dtype=bool))
        elif isinstance(mask, np.ndarray):
            mask_arr = pa.array(mask.astype(bool, copy=False))
        else:
            mask_arr = pc.fill_null(mask, False)
        if self.num_rows == 0 or not pc.any(mask_arr).as_py():
            return
        if isinstance(detail, str):
            detail_arr: pa.Array = pa.array([f"{reason}: {detail}"] * 1, pa.string())
            detail_arr = pa.repeat(detail_arr[0], self.num_rows) if self.num_rows else detail_arr
        else:
            detail_arr = pc.binary_join_element_wise(f"{reason}: ", detail.cast(pa.string()), "")
        self._items.append((reason, mask_arr, detail_arr))

    def add_rows(self, reason: str, rows: Sequence[int], details: Sequence[str]) -> None:
        """Flag a few rows by index, each with its own detail (framing problems)."""
        if not rows:
            return
        mask = np.zeros(self.num_rows, dtype=bool)
        mask[list(rows)] = True
        detail: list[str | None] = [None] * self.num_rows
        for row, text in zip(rows, details, strict=True):
            detail[row] = text
        self.add(reason, mask, pa.array(detail, pa.string()))

    def take(self, indices: pa.Array) -> Flags:
        """Flags for rows picked (and possibly repeated) by ``indices`` — EventList expansion."""
        out = Flags(len(indices))
        out._items = [(r, m.take(indices), d.take(indices)) for r, m, d in self._items]
        return out

    def scatter(self, other: Flags, mask: pa.Array) -> None:
        """Add the flags of a subset (the rows where ``mask`` is true, in order) to this full set."""
        none = pa.array(np.zeros(self.num_rows, dtype=bool))
        for reason, m, d in other._items:
            full_mask = pc.replace_with_mask(none, mask, m)
            full_detail = pc.replace_with_mask(
                pa.nulls(self.num_rows, pa.string()), mask, d.cast(pa.string())
            )
            self._items.append((reason, full_mask, full_detail))

    def extend(self, other: Flags) -> None:
        if other.num_rows != self.num_rows:
            raise ValueError("flag sets of different lengths")
        self._items.extend(other._items)

    def mask(self) -> pa.BooleanArray:
        """Rows with any problem."""
        out = pa.array(np.zeros(self.num_rows, dtype=bool))
        for _, m, _ in self._items:
            out = pc.or_(out, m)
        return out

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for reason, m, _ in self._items:
            totals[reason] = totals.get(reason, 0) + int(pc.sum(m.cast(pa.int64())).as_py() or 0)
        return totals

    def columns(self) -> tuple[pa.Array, pa.Array]:
        """(``event.parse_error``, ``error.message``) columns."""
        n = self.num_rows
        if not self._items:
            return pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
        items = sorted(self._items, key=lambda it: _RANK.get(it[0], len(_RANK)))
        reason_col: pa.Array = pa.nulls(n, pa.string())
        seen: set[str] = set()
        for reason, m, _ in items:
            if reason in seen:  # the same code from two checks: once is enough
                m = pc.and_(m, pc.invert(pc.match_substring(pc.fill_null(reason_col, ""), reason)))
            seen.add(reason)
            joined_reason = pc.binary_join_element_wise(reason_col, pa.scalar(reason), ",")
            reason_col = pc.if_else(m, pc.coalesce(joined_reason, pa.scalar(reason)), reason_col)
        pieces = [pc.if_else(m, d, pa.scalar(None, pa.string())) for _, m, d in items]
        if len(pieces) == 1:
            return reason_col, pieces[0]
        # (binary_join_element_wise's null_handling="skip" drops all-null rows in pyarrow 26)
        joined = pieces[0]
        for piece in pieces[1:]:
            both = pc.binary_join_element_wise(joined, piece, "; ")
            joined = pc.coalesce(both, joined, piece)
        return reason_col, joined
