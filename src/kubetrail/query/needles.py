"""What the store may use to skip data: required needles and the time range.

A *needle* ``(column, text)`` promises: every matching row has ``text`` in ``column`` starting and
ending at alphanumeric boundaries (for a keyword column: the whole value). So every token
``kubetrail.store.tokens.needle_tokens(text)`` returns is in that row's value, and a segment whose
token index lacks one of them cannot match. Needles come only from clauses every match must
satisfy — the top-level AND of the search and of leading ``| where`` pipes — never from inside an
OR or a NOT. Wildcard terms contribute their literal pieces, cut back to whole runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kubetrail.errors import QueryError
from kubetrail.query.ast import And, Cmp, Compare, Expr, FieldName, Literal, Logic, Range, Search, Term, Wild
from kubetrail.query.fields import resolve_field
from kubetrail.query.sqlgen import DEFAULT_FIELD, is_alnum
from kubetrail.query.values import parse_time

__all__ = ["TimeRange", "search_needles", "search_time_range", "where_needles"]

_NEEDLE_KINDS = frozenset({"text", "keyword", "list"})


@dataclass(frozen=True)
class TimeRange:
    """Inclusive bounds on ``@timestamp`` every match satisfies (``None``: unbounded)."""

    start: datetime | None = None
    end: datetime | None = None

    def intersect(self, other: TimeRange) -> TimeRange:
        starts = [t for t in (self.start, other.start) if t is not None]
        ends = [t for t in (self.end, other.end) if t is not None]
        return TimeRange(max(starts) if starts else None, min(ends) if ends else None)


def _trim(piece: str, left_partial: bool, right_partial: bool) -> str:
    """Drop the alphanumeric run at an edge that touches a wildcard: it may be part of a longer run."""
    if left_partial:
        i = 0
        while i < len(piece) and is_alnum(piece[i]):
            i += 1
        piece = piece[i:]
    if right_partial:
        j = len(piece)
        while j > 0 and is_alnum(piece[j - 1]):
            j -= 1
        piece = piece[:j]
    return piece


def _term_needles(node: Term) -> list[tuple[str, str]]:
    try:
        f = resolve_field(node.field or DEFAULT_FIELD)
    except QueryError:
        return []
    if f.kind not in _NEEDLE_KINDS or f.column is None or f.is_json_path:
        return []
    if node.quoted or node.pattern is None:
        pieces = [node.value]
    else:
        parts = node.pattern
        pieces = [
            _trim(
                p,
                k > 0 and isinstance(parts[k - 1], Wild),
                k + 1 < len(parts) and isinstance(parts[k + 1], Wild),
            )
            for k, p in enumerate(parts)
            if isinstance(p, str)
        ]
    return [(f.column, p) for p in pieces if any(is_alnum(c) for c in p)]


def search_needles(node: Search) -> list[tuple[str, str]]:
    """Needles every row matching ``node`` must contain (see the module docstring)."""
    if isinstance(node, And):
        out: list[tuple[str, str]] = []
        for child in node.children:
            out.extend(n for n in search_needles(child) if n not in out)
        return out
    if isinstance(node, Term):
        return _term_needles(node)
    return []


def where_needles(expr: Expr) -> list[tuple[str, str]]:
    """Needles from ``field = "value"`` comparisons in the top-level AND of a raw ``| where``."""
    if isinstance(expr, Logic) and expr.op == "and":
        out: list[tuple[str, str]] = []
        for item in expr.items:
            out.extend(n for n in where_needles(item) if n not in out)
        return out
    if isinstance(expr, Cmp) and expr.op == "=":
        left, right = expr.left, expr.right
        if isinstance(left, Literal):
            left, right = right, left
        if isinstance(left, FieldName) and isinstance(right, Literal) and isinstance(right.value, str):
            try:
                f = resolve_field(left.name)
            except QueryError:
                return []
            if (
                f.kind in _NEEDLE_KINDS
                and f.column
                and not f.is_json_path
                and any(is_alnum(c) for c in right.value)
            ):
                return [(f.column, right.value)]
    return []


def search_time_range(node: Search, now: datetime) -> TimeRange:
    """Bounds on ``@timestamp`` from the top-level AND of the search (for segment pruning)."""
    if isinstance(node, And):
        out = TimeRange()
        for child in node.children:
            out = out.intersect(search_time_range(child, now))
        return out
    if not isinstance(node, Compare | Range | Term):
        return TimeRange()
    try:
        f = resolve_field(node.field) if node.field else None
    except QueryError:
        return TimeRange()
    if f is None or f.column != "@timestamp" or f.is_json_path:
        return TimeRange()
    if isinstance(node, Term):
        parsed = parse_time(node.value, now) if node.pattern is None else None
        if parsed is None:
            return TimeRange()
        t, whole_day = parsed
        return TimeRange(t, t + timedelta(days=1) if whole_day else t)
    if isinstance(node, Compare):
        low = node.value if node.op.startswith(">") else None
        high = node.value if node.op.startswith("<") else None
    else:
        low, high = node.low, node.high
    lo = parse_time(low, now) if low is not None else None
    hi = parse_time(high, now) if high is not None else None
    return TimeRange(lo[0] if lo else None, hi[0] if hi else None)
