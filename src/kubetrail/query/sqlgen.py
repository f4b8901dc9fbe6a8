"""Search expressions and ``| where`` expressions -> DuckDB SQL predicates.

Matching rules (``docs/query.md`` has the full table):

* ``text`` fields (``message``, free text): match of the term (ASCII letters in either case) at alphanumeric
  boundaries (token semantics, the same rule the store's token index uses), written as a cheap
  ``ILIKE '%term%'`` pre-filter plus a boundary check with ``regexp_matches`` only when the term
  starts or ends with a letter or digit. Wildcards: ``*`` any run of non-space characters, ``?``
  one non-space character.
* ``keyword`` fields: exact, case-sensitive equality (a plain ``=`` DuckDB pushes into Parquet
  scans and checks against min/max statistics); wildcards become ``LIKE``.
* numbers and timestamps compare with their type; lists match when any element matches.

Leaves are plain comparisons so DuckDB can push them down. SQL ``NULL`` would make ``NOT`` drop
events that lack the field, so a negation is written ``NOT coalesce(x, false)``: ``NOT verb:get``
keeps events without a verb, like Lucene.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from kubetrail.errors import QueryError
from kubetrail.query.ast import (
    And,
    Call,
    Cmp,
    Compare,
    Exists,
    Expr,
    FieldName,
    InList,
    IsNull,
    Like,
    Literal,
    Logic,
    MatchAll,
    Not,
    NotExpr,
    Or,
    Pattern,
    Search,
    Term,
    Wild,
)
from kubetrail.query.fields import ResolvedField, quote_ident, resolve_field, sql_string
from kubetrail.query.values import parse_number, parse_time, timestamp_sql

__all__ = ["DEFAULT_FIELD", "OutputScope", "RawScope", "Scope", "SearchSQL", "WhereSQL", "is_alnum"]

DEFAULT_FIELD = "message"
_RE_SPECIAL = frozenset("\\.^$|?*+()[]{}")
_NOT_ALNUM = "[^0-9A-Za-z]"


def is_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _re_literal(text: str) -> str:
    """A regex for ``text`` where ASCII letters match either case and everything else exactly.

    Not ``(?i)``: RE2 and ILIKE fold Unicode (the Kelvin sign matches ``k``), the token index
    folds ASCII only, and the two must agree or pruning would change answers.
    """
    out: list[str] = []
    for c in text:
        if c.isascii() and c.isalpha():
            out.append(f"[{c.lower()}{c.upper()}]")
        else:
            out.append("\\" + c if c in _RE_SPECIAL else c)
    return "".join(out)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Scope:
    """What field names mean at some point of the pipeline."""

    raw = True

    def __init__(self, query: str) -> None:
        self.query = query
        self.columns_used: set[str] = set()

    def field(self, name: str, pos: int | None) -> ResolvedField:
        raise NotImplementedError  # abstract: RawScope and OutputScope resolve fields

    def error(self, message: str, pos: int | None) -> QueryError:
        return QueryError(message, query=self.query, position=pos)


class RawScope(Scope):
    """Event rows: names resolve through the schema (columns, audit aliases, JSON paths)."""

    def field(self, name: str, pos: int | None) -> ResolvedField:
        ref = resolve_field(name, self.query, pos)
        if ref.column:
            self.columns_used.add(ref.column)
        return ref


class OutputScope(Scope):
    """Rows of an aggregation: only its output columns exist."""

    raw = False

    def __init__(self, query: str, columns: dict[str, str]) -> None:
        super().__init__(query)
        self.columns = columns  # output name -> kind

    def field(self, name: str, pos: int | None) -> ResolvedField:
        if name not in self.columns:
            known = ", ".join(self.columns)
            raise self.error(f"unknown field {name!r} after the aggregation (columns: {known})", pos)
        return ResolvedField(name, quote_ident(name), self.columns[name], None)


class _Literals:
    def __init__(self, query: str) -> None:
        self.query = query

    def string(self, value: str, pos: int | None) -> str:
        try:
            return sql_string(value)
        except ValueError:
            raise QueryError(
                "NUL characters are not allowed in values", query=self.query, position=pos
            ) from None


class SearchSQL(_Literals):
    """Translate a search tree to a SQL boolean expression."""

    def __init__(self, query: str, scope: Scope, now: datetime) -> None:
        super().__init__(query)
        self.scope = scope
        self.now = now

    def render(self, node: Search) -> str:
        if isinstance(node, MatchAll):
            return "true"
        if isinstance(node, And):
            return "(" + " AND ".join(self.render(c) for c in node.children) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.render(c) for c in node.children) + ")"
        if isinstance(node, Not):
            return f"(NOT coalesce({self.render(node.child)}, false))"
        if isinstance(node, Exists):
            return exists_sql(self.scope.field(node.field, node.pos))
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Compare):
            low, high, include_low, include_high = _compare_bounds(node)
            return self.bounds(node.field, node.field_pos, node.pos, low, high, include_low, include_high)
        return self.bounds(
            node.field,
            node.field_pos,
            node.pos,
            low=node.low,
            high=node.high,
            include_low=node.include_low,
            include_high=node.include_high,
        )

    # ---- term ---------------------------------------------------------------------------------

    def term(self, node: Term) -> str:
        f = self.scope.field(node.field or DEFAULT_FIELD, node.field_pos if node.field else node.pos)
        pattern = None if node.quoted else node.pattern
        if f.kind == "text":
            return self.text_match(f.sql, node.value, pattern, node.pos)
        if f.kind in ("keyword", "json"):
            return self.keyword_match(f.sql, node.value, pattern, node.pos)
        if f.kind in ("list", "jsonlist"):
            inner = self.keyword_match("x", node.value, pattern, node.pos)
            if pattern is None:
                return f"list_contains({f.sql}, {self.string(node.value, node.pos)})"
            return f"(len(list_filter({f.sql}, lambda x: {inner})) > 0)"
        if f.kind in ("int", "float"):
            if pattern is not None:
                like = self.like_pattern(pattern, node.pos, anchored=True)
                return f"(CAST({f.sql} AS VARCHAR) LIKE {like})"
            number = parse_number(node.value)
            if number is None:
                raise self.scope.error(f"{f.name} is a number; {node.value!r} is not", node.pos)
            return f"({f.sql} = {number!r})"
        if f.kind == "timestamp":
            if pattern is not None:
                raise self.scope.error(f"wildcards do not apply to the timestamp {f.name}", node.pos)
            t, whole_day = self.time(f, node.value, node.pos)
            if whole_day:
                end = t + timedelta(days=1)
                return f"({f.sql} >= {timestamp_sql(t)} AND {f.sql} < {timestamp_sql(end)})"
            return f"({f.sql} = {timestamp_sql(t)})"
        # a derived column of unknown type: compare as text
        return f"(CAST({f.sql} AS VARCHAR) = {self.string(node.value, node.pos)})"

    def like_pattern(self, pattern: Pattern, pos: int, anchored: bool) -> str:
        body = "".join("%" if p is Wild.STAR else "_" if p is Wild.ONE else _like_escape(p) for p in pattern)
        if not anchored:
            body = f"%{body}%"
        escape = " ESCAPE '\\'" if "\\" in body else ""
        return self.string(body, pos) + escape

    def keyword_match(self, sql: str, value: str, pattern: Pattern | None, pos: int) -> str:
        if pattern is None:
            return f"({sql} = {self.string(value, pos)})"
        return f"({sql} LIKE {self.like_pattern(pattern, pos, anchored=True)})"

    def text_match(self, sql: str, value: str, pattern: Pattern | None, pos: int) -> str:
        """Case-insensitive match at alphanumeric boundaries (see the module docstring)."""
        parts: Pattern = pattern if pattern is not None else (value,)
        if pattern is None and value == "":
            return f"({sql} = '')"
        ilike = f"({sql} ILIKE {self.like_pattern(parts, pos, anchored=False)})"
        first, last = parts[0], parts[-1]
        left = isinstance(first, str) and is_alnum(first[0])
        right = isinstance(last, str) and is_alnum(last[-1])
        letters = any(isinstance(p, str) and any(c.isalpha() for c in p) for p in parts)
        if not (left or right or letters or pattern is not None):
            return ilike  # no letters to fold and no boundary to check: ILIKE is exact here
        # a leading or trailing `*` adds nothing to an unanchored search: leave it out of the regex
        core = list(parts)
        while core and core[0] is Wild.STAR:
            core.pop(0)
        while core and core[-1] is Wild.STAR:
            core.pop()
        regex = "".join(
            "\\S*" if p is Wild.STAR else "\\S" if p is Wild.ONE else _re_literal(p) for p in core
        )
        regex = (f"(?:^|{_NOT_ALNUM})" if left else "") + regex + (f"(?:$|{_NOT_ALNUM})" if right else "")
        return f"({ilike[1:-1]} AND regexp_matches({sql}, {self.string(regex, pos)}))"

    # ---- ranges -------------------------------------------------------------------------------

    def time(self, f: ResolvedField, text: str, pos: int) -> tuple[datetime, bool]:
        parsed = parse_time(text, self.now)
        if parsed is None:
            raise self.scope.error(
                f"{f.name} is a timestamp; {text!r} is not a time (use ISO 8601 like 2024-05-01T10:00:00Z, "
                "or now-1h, or 24h)",
                pos,
            )
        return parsed

    def bound_value(self, f: ResolvedField, text: str, pos: int, numeric_json: bool) -> str:
        if f.kind in ("int", "float") or numeric_json:
            number = parse_number(text)
            if number is None:
                raise self.scope.error(f"{f.name} is a number; {text!r} is not", pos)
            return repr(number)
        if f.kind == "timestamp":
            return timestamp_sql(self.time(f, text, pos)[0])
        return self.string(text, pos)

    def bounds(
        self,
        field: str,
        field_pos: int,
        pos: int,
        low: str | None,
        high: str | None,
        include_low: bool,
        include_high: bool,
    ) -> str:
        f = self.scope.field(field, field_pos)
        values = [v for v in (low, high) if v is not None]
        numeric_json = f.kind in ("json", "jsonlist") and all(parse_number(v) is not None for v in values)
        subject = "x" if f.kind in ("list", "jsonlist") else f.sql
        if numeric_json:
            subject = f"TRY_CAST({subject} AS DOUBLE)"
        conds: list[str] = []
        if low is not None:
            conds.append(
                f"{subject} {'>=' if include_low else '>'} {self.bound_value(f, low, pos, numeric_json)}"
            )
        if high is not None:
            conds.append(
                f"{subject} {'<=' if include_high else '<'} {self.bound_value(f, high, pos, numeric_json)}"
            )
        if not conds:
            return exists_sql(f)
        cond = " AND ".join(conds)
        if f.kind in ("list", "jsonlist"):
            return f"(len(list_filter({f.sql}, lambda x: {cond})) > 0)"
        return f"({cond})"


def _compare_bounds(node: Compare) -> tuple[str | None, str | None, bool, bool]:
    """``field:>x`` as range bounds (low, high, include_low, include_high)."""
    if node.op.startswith(">"):
        return node.value, None, node.op == ">=", False
    return None, node.value, False, node.op == "<="


def exists_sql(f: ResolvedField) -> str:
    if f.kind in ("list", "jsonlist"):
        return f"(len({f.sql}) > 0)"
    return f"({f.sql} IS NOT NULL)"


_BOOLEAN_CALLS = frozenset({"contains", "startswith", "endswith", "match"})
_CALL_SQL: dict[str, Callable[[list[str]], str]] = {
    "lower": lambda a: f"lower({a[0]})",
    "upper": lambda a: f"upper({a[0]})",
    "length": lambda a: f"length({a[0]})",
    "len": lambda a: f"len({a[0]})",
    "contains": lambda a: f"contains({a[0]}, {a[1]})",
    "startswith": lambda a: f"starts_with({a[0]}, {a[1]})",
    "endswith": lambda a: f"ends_with({a[0]}, {a[1]})",
    "match": lambda a: f"regexp_matches({a[0]}, {a[1]})",
    "coalesce": lambda a: f"coalesce({', '.join(a)})",
    "abs": lambda a: f"abs({a[0]})",
}


class WhereSQL(_Literals):
    """Translate a ``| where`` expression tree to SQL, typing literals by the field they meet."""

    def __init__(self, query: str, scope: Scope, now: datetime) -> None:
        super().__init__(query)
        self.scope = scope
        self.now = now

    def condition(self, expr: Expr, pos: int) -> str:
        if isinstance(expr, FieldName | Literal) and not (
            isinstance(expr, Literal) and isinstance(expr.value, bool)
        ):
            raise self.scope.error(
                "| where needs a condition such as field = value", getattr(expr, "pos", pos)
            )
        if isinstance(expr, Call) and expr.name not in _BOOLEAN_CALLS:
            raise self.scope.error(f"{expr.name}() is not a condition", expr.pos)
        return self.render(expr)

    def literal(self, lit: Literal) -> str:
        v = lit.value
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return self.string(v, lit.pos)

    def typed_literal(self, f: ResolvedField, lit: Literal) -> tuple[str, str]:
        """(subject sql, literal sql) with the literal converted to the field's type."""
        v = lit.value
        subject = "x" if f.kind in ("list", "jsonlist") else f.sql
        if v is None or isinstance(v, bool):
            if isinstance(v, bool) and f.kind in ("json", "keyword", "text", "list", "jsonlist"):
                return subject, sql_string("true" if v else "false")
            return subject, self.literal(lit)
        if f.kind == "timestamp":
            parsed = parse_time(str(v), self.now) if isinstance(v, str) else None
            if parsed is None:
                raise self.scope.error(f"{f.name} is a timestamp; {v!r} is not a time", lit.pos)
            return subject, timestamp_sql(parsed[0])
        if f.kind in ("int", "float"):
            number = v if isinstance(v, int | float) else parse_number(v)
            if number is None:
                raise self.scope.error(f"{f.name} is a number; {v!r} is not", lit.pos)
            return subject, repr(number)
        if isinstance(v, int | float) and f.kind in ("json", "keyword", "text", "list", "jsonlist"):
            return f"TRY_CAST({subject} AS DOUBLE)", repr(v)
        return subject, self.literal(lit)

    def render(self, expr: Expr) -> str:
        if isinstance(expr, Logic):
            return "(" + f" {expr.op.upper()} ".join(self.render(i) for i in expr.items) + ")"
        if isinstance(expr, NotExpr):
            return f"(NOT coalesce({self.render(expr.item)}, false))"
        if isinstance(expr, FieldName):
            return self.scope.field(expr.name, expr.pos).sql
        if isinstance(expr, Literal):
            return self.literal(expr)
        if isinstance(expr, Cmp):
            return self.compare(expr)
        if isinstance(expr, InList):
            return self.in_list(expr)
        if isinstance(expr, Like):
            op = ("NOT " if expr.negated else "") + ("ILIKE" if expr.case_insensitive else "LIKE")
            pattern = self.string(expr.pattern, expr.pos)
            if isinstance(expr.left, FieldName):
                f = self.scope.field(expr.left.name, expr.left.pos)
                if f.kind in ("list", "jsonlist"):
                    any_match = (
                        f"(len(list_filter({f.sql}, lambda x: x {op.replace('NOT ', '')} {pattern})) > 0)"
                    )
                    return f"(NOT coalesce({any_match}, false))" if expr.negated else any_match
            return f"({self.render(expr.left)} {op} {pattern})"
        if isinstance(expr, IsNull):
            if isinstance(expr.left, FieldName):
                f = self.scope.field(expr.left.name, expr.left.pos)
                if f.kind in ("list", "jsonlist"):
                    empty = f"({f.sql} IS NULL OR len({f.sql}) = 0)"
                    return f"(NOT {empty})" if expr.negated else empty
            return f"({self.render(expr.left)} IS {'NOT ' if expr.negated else ''}NULL)"
        return self.call(expr)

    def call(self, expr: Call) -> str:
        args = [self.render(a) for a in expr.args]
        if expr.name == "match":
            pattern = expr.args[1]
            if not (isinstance(pattern, Literal) and isinstance(pattern.value, str)):
                raise self.scope.error("match() needs a quoted regular expression", expr.pos)
            _check_regex(pattern.value, self.query, pattern.pos)
        return _CALL_SQL[expr.name](args)

    def compare(self, expr: Cmp) -> str:
        left, right, op = expr.left, expr.right, expr.op
        if isinstance(left, Literal) and isinstance(right, FieldName):
            left, right = right, left
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
        if isinstance(right, Literal) and right.value is None and op in ("=", "!="):
            return self.render(IsNull(left, op == "!=", expr.pos))
        if isinstance(left, FieldName) and isinstance(right, Literal):
            f = self.scope.field(left.name, left.pos)
            subject, value = self.typed_literal(f, right)
            if f.kind in ("list", "jsonlist"):
                if op in ("=", "!=") and subject == "x":
                    contains = f"list_contains({f.sql}, {value})"
                    return f"(NOT coalesce({contains}, false))" if op == "!=" else f"({contains})"
                return f"(len(list_filter({f.sql}, lambda x: {subject} {_sql_op(op)} {value})) > 0)"
            return f"({subject} {_sql_op(op)} {value})"
        return f"({self.render(left)} {_sql_op(op)} {self.render(right)})"

    def in_list(self, expr: InList) -> str:
        if isinstance(expr.left, FieldName):
            f = self.scope.field(expr.left.name, expr.left.pos)
            typed = [self.typed_literal(f, item) for item in expr.items]
            values = ", ".join(v for _, v in typed)
            if f.kind in ("list", "jsonlist"):
                cond = f"list_has_any({f.sql}, [{values}])"
            else:
                cond = f"{typed[0][0]} IN ({values})"
        else:
            values = ", ".join(self.literal(i) for i in expr.items)
            cond = f"{self.render(expr.left)} IN ({values})"
        return f"(NOT coalesce({cond}, false))" if expr.negated else f"({cond})"


def _sql_op(op: str) -> str:
    return "<>" if op == "!=" else op


def _check_regex(pattern: str, query: str, pos: int) -> None:
    """Compile the regex with DuckDB's own engine (RE2) so a bad one fails here, with a position."""
    import duckdb

    try:
        duckdb.connect().execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"invalid regular expression: {exc}", query=query, position=pos) from None
