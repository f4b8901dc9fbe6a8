"""The syntax tree of a hunting query: a search expression followed by pipes.

Every node keeps ``pos``, the offset in the query text where it starts, so later stages (field
resolution, typing, SQL generation) can point a ``QueryError`` at the exact place a problem is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Agg",
    "And",
    "Call",
    "Cmp",
    "Compare",
    "Dedup",
    "Exists",
    "Expr",
    "FieldName",
    "Fields",
    "Head",
    "InList",
    "IsNull",
    "Like",
    "Literal",
    "Logic",
    "MatchAll",
    "Not",
    "NotExpr",
    "Or",
    "Pattern",
    "Pipe",
    "Query",
    "Range",
    "Search",
    "Sort",
    "SortKey",
    "Stats",
    "Term",
    "Timechart",
    "Top",
    "Where",
    "Wild",
]


class Wild(Enum):
    """A wildcard inside a term: ``*`` (any run) or ``?`` (one character)."""

    STAR = "*"
    ONE = "?"


Pattern = tuple["str | Wild", ...]


# ---- search expression ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """``value``, ``"phrase"`` or ``field:value``; ``pattern`` is set when the value has wildcards."""

    field: str | None
    value: str
    pos: int
    quoted: bool = False
    pattern: Pattern | None = None
    field_pos: int | None = None


@dataclass(frozen=True)
class Compare:
    """``field:>400``, ``field:<=now-1h``."""

    field: str
    op: str
    value: str
    pos: int
    field_pos: int


@dataclass(frozen=True)
class Range:
    """``field:[a TO b]`` (inclusive) / ``{a TO b}`` (exclusive); ``None`` is an open ``*`` bound."""

    field: str
    low: str | None
    high: str | None
    include_low: bool
    include_high: bool
    pos: int
    field_pos: int


@dataclass(frozen=True)
class Exists:
    """``_exists_:field`` or ``field:*``."""

    field: str
    pos: int


@dataclass(frozen=True)
class MatchAll:
    """The empty search (``*`` or nothing before the first pipe)."""

    pos: int = 0


@dataclass(frozen=True)
class And:
    children: tuple[Search, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Search, ...]


@dataclass(frozen=True)
class Not:
    child: Search
    pos: int


Search = Term | Compare | Range | Exists | MatchAll | And | Or | Not


# ---- `| where` expressions -----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldName:
    name: str
    pos: int


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool | None
    pos: int


@dataclass(frozen=True)
class Cmp:
    op: str  # = != < <= > >=
    left: Expr
    right: Expr
    pos: int


@dataclass(frozen=True)
class Logic:
    op: str  # and / or
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class NotExpr:
    item: Expr
    pos: int


@dataclass(frozen=True)
class InList:
    left: Expr
    items: tuple[Literal, ...]
    negated: bool
    pos: int


@dataclass(frozen=True)
class Like:
    left: Expr
    pattern: str
    negated: bool
    case_insensitive: bool
    pos: int


@dataclass(frozen=True)
class IsNull:
    left: Expr
    negated: bool
    pos: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    pos: int


Expr = FieldName | Literal | Cmp | Logic | NotExpr | InList | Like | IsNull | Call


# ---- pipes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    expr: Expr
    pos: int


@dataclass(frozen=True)
class Fields:
    names: tuple[FieldName, ...]
    pos: int


@dataclass(frozen=True)
class SortKey:
    field: FieldName
    descending: bool


@dataclass(frozen=True)
class Sort:
    keys: tuple[SortKey, ...]
    pos: int


@dataclass(frozen=True)
class Head:
    n: int
    pos: int


@dataclass(frozen=True)
class Agg:
    """``count()``, ``avg(x)``, ``p95(x) as slow``; ``alias`` is the output column name."""

    func: str
    field: FieldName | None
    alias: str
    pos: int


@dataclass(frozen=True)
class Stats:
    aggs: tuple[Agg, ...]
    by: tuple[FieldName, ...]
    pos: int


@dataclass(frozen=True)
class Timechart:
    span_secs: int
    aggs: tuple[Agg, ...]
    by: tuple[FieldName, ...]
    pos: int


@dataclass(frozen=True)
class Dedup:
    fields: tuple[FieldName, ...]
    pos: int


@dataclass(frozen=True)
class Top:
    """``top N field[, field] [by x]``; ``rare`` is the same with the least frequent first."""

    n: int
    fields: tuple[FieldName, ...]
    by: tuple[FieldName, ...]
    rare: bool
    pos: int


Pipe = Where | Fields | Sort | Head | Stats | Timechart | Dedup | Top


@dataclass(frozen=True)
class Query:
    text: str
    search: Search
    pipes: tuple[Pipe, ...]
