"""Lexer and parser for the pipes after the search: ``| where``, ``| stats``, ``| sort`` ...

Pipes use a small conventional token grammar (identifiers, quoted strings, numbers, operators),
unlike the search part. Field names are identifiers that may contain dots, ``@``, ``/``, ``-`` and
``[*]`` (``responseStatus.code``, ``@timestamp``, ``requestObject.spec.containers[*].image``);
anything else can be written in backticks. ``| where`` expressions are parsed here into a tree —
never passed through as SQL — and translated field by field later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubetrail.errors import QueryError
from kubetrail.query.ast import (
    Agg,
    Call,
    Cmp,
    Dedup,
    Expr,
    FieldName,
    Fields,
    Head,
    InList,
    IsNull,
    Like,
    Literal,
    Logic,
    NotExpr,
    Pipe,
    Sort,
    SortKey,
    Stats,
    Timechart,
    Top,
    Where,
)

__all__ = ["AGG_FUNCTIONS", "MAX_HEAD", "WHERE_FUNCTIONS", "parse_pipes", "parse_span"]

MAX_HEAD = 10_000_000
AGG_FUNCTIONS = frozenset({"count", "dc", "avg", "sum", "min", "max", "values", "median"})
_PERCENTILE = re.compile(r"p([1-9][0-9]?)$")
# name -> (min args, max args)
WHERE_FUNCTIONS: dict[str, tuple[int, int]] = {
    "lower": (1, 1),
    "upper": (1, 1),
    "length": (1, 1),
    "len": (1, 1),
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "match": (2, 2),
    "coalesce": (1, 8),
    "abs": (1, 1),
}
_IDENT_CHARS = re.compile(r"[A-Za-z0-9_@.$/\[\]*\-]")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
_SPAN = re.compile(
    r"([0-9]+)\s*(s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hour|hours|d|day|days|w|week|weeks)$"
)
_UNIT_SECS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">")
_WS = " \t\r\n"


@dataclass(frozen=True)
class Tok:
    kind: str  # ident string number op ( ) , - pipe eof
    text: str
    pos: int
    value: str | float | int | None = None


def _lex(text: str, start: int) -> list[Tok]:
    """Tokens of all the pipes in ``text[start:]`` (``start`` is at the first ``|``)."""
    out: list[Tok] = []
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in _WS:
            i += 1
        elif c == "|":
            out.append(Tok("pipe", c, i))
            i += 1
        elif c in "(),":
            out.append(Tok(c, c, i))
            i += 1
        elif c in "'\"`":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise QueryError("unterminated quoted string", query=text, position=i)
            out.append(Tok("ident" if c == "`" else "string", text[i : j + 1], i, "".join(buf)))
            i = j + 1
        elif c in "=!<>":
            for op in _OPERATORS:
                if text.startswith(op, i):
                    out.append(Tok("op", op, i))
                    i += len(op)
                    break
            else:
                raise QueryError(f"unexpected {c!r}", query=text, position=i)
        elif c == "-" and not (i + 1 < n and text[i + 1].isdigit()):
            out.append(Tok("-", c, i))
            i += 1
        elif c == "+":
            out.append(Tok("+", c, i))
            i += 1
        elif _IDENT_CHARS.match(c):
            j = i + 1
            while j < n and _IDENT_CHARS.match(text[j]):
                j += 1
            word = text[i:j]
            if _NUMBER.match(word):
                num: float | int = float(word) if any(ch in word for ch in ".eE") else int(word)
                out.append(Tok("number", word, i, num))
            else:
                out.append(Tok("ident", word, i, word))
            i = j
        else:
            raise QueryError(f"unexpected {c!r} in a pipe", query=text, position=i)
    out.append(Tok("eof", "", n))
    return out


class PipeParser:
    def __init__(self, text: str, tokens: list[Tok]) -> None:
        self.text = text
        self.toks = tokens
        self.k = 0
        self.depth = 0

    def error(self, message: str, tok: Tok | None = None) -> QueryError:
        return QueryError(message, query=self.text, position=(tok or self.peek()).pos)

    def peek(self, ahead: int = 0) -> Tok:
        return self.toks[min(self.k + ahead, len(self.toks) - 1)]

    def next(self) -> Tok:
        tok = self.peek()
        self.k = min(self.k + 1, len(self.toks) - 1)
        return tok

    def is_word(self, word: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "ident" and tok.text.lower() == word and tok.text[0] != "`"

    def accept(self, kind: str) -> bool:
        if self.peek().kind == kind:
            self.next()
            return True
        return False

    def expect(self, kind: str, what: str) -> Tok:
        if self.peek().kind != kind:
            raise self.error(f"expected {what}")
        return self.next()

    def at_pipe_end(self) -> bool:
        return self.peek().kind in ("pipe", "eof")

    # ---- pipes --------------------------------------------------------------------------------

    def parse_all(self) -> tuple[Pipe, ...]:
        pipes: list[Pipe] = []
        while self.peek().kind != "eof":
            bar = self.expect("pipe", "'|'")
            cmd = self.peek()
            if cmd.kind != "ident":
                raise self.error("expected a pipe command (where, fields, sort, head, stats, ...)", cmd)
            self.next()
            name = cmd.text.lower()
            handler = getattr(self, f"pipe_{name}", None)
            if handler is None or name.startswith("_"):
                raise self.error(f"unknown pipe command {cmd.text!r}", cmd)
            pipes.append(handler(cmd.pos))
            if not self.at_pipe_end():
                raise self.error(f"unexpected {self.peek().text!r} in | {name}")
            del bar
        return tuple(pipes)

    def field(self, what: str = "a field name") -> FieldName:
        tok = self.peek()
        if tok.kind != "ident" or not tok.value:
            raise self.error(f"expected {what}")
        self.next()
        return FieldName(str(tok.value), tok.pos)

    def field_list(self, stop_words: tuple[str, ...] = ()) -> tuple[FieldName, ...]:
        names = [self.field()]
        while True:
            bare = self.peek().kind == "ident" and not any(self.is_word(w) for w in stop_words)
            if self.accept(",") or bare:
                names.append(self.field())
            else:
                return tuple(names)

    def pipe_where(self, pos: int) -> Where:
        if self.at_pipe_end():
            raise self.error("expected an expression after | where")
        return Where(self.expr_or(), pos)

    def pipe_fields(self, pos: int) -> Fields:
        if self.at_pipe_end():
            raise self.error("expected field names after | fields")
        return Fields(self.field_list(), pos)

    pipe_table = pipe_fields

    def pipe_sort(self, pos: int) -> Sort:
        keys: list[SortKey] = []
        while True:
            desc = False
            if self.accept("-"):
                desc = True
            else:
                self.accept("+")
            name = self.field("a field to sort by")
            if self.is_word("desc") or self.is_word("asc"):
                desc = self.next().text.lower() == "desc"
            keys.append(SortKey(name, desc))
            if not self.accept(","):
                if self.peek().kind in ("ident", "-", "+"):
                    continue
                break
        return Sort(tuple(keys), pos)

    def count_arg(self, default: int, what: str) -> int:
        tok = self.peek()
        if self.is_word("limit") and self.peek(1).kind == "op" and self.peek(1).text == "=":
            self.next()
            self.next()
            tok = self.peek()
        if tok.kind != "number":
            return default
        self.next()
        if not isinstance(tok.value, int) or not 0 < tok.value <= MAX_HEAD:
            raise self.error(f"{what} must be a whole number from 1 to {MAX_HEAD}", tok)
        return tok.value

    def pipe_head(self, pos: int) -> Head:
        return Head(self.count_arg(10, "the row count"), pos)

    pipe_limit = pipe_head

    def agg(self) -> Agg:
        tok = self.peek()
        if tok.kind != "ident":
            raise self.error("expected an aggregation such as count(), avg(x), dc(x)")
        self.next()
        func = tok.text.lower()
        func = {"distinct_count": "dc", "mean": "avg"}.get(func, func)
        if func not in AGG_FUNCTIONS and not _PERCENTILE.match(func):
            raise self.error(
                f"unknown aggregation {tok.text!r} (count, dc, avg, sum, min, max, values, median, pNN)", tok
            )
        arg: FieldName | None = None
        if self.accept("("):
            if self.peek().kind == "ident" and self.peek().text != "*":
                arg = self.field()
            elif self.peek().kind == "ident":
                self.next()  # count(*)
            self.expect(")", "')' to close the aggregation")
        elif func != "count":
            raise self.error(f"{func} needs a field: {func}(field)")
        if arg is None and func != "count":
            raise self.error(f"{func} needs a field: {func}(field)", tok)
        alias = func if arg is None else f"{func}({arg.name})"
        if self.is_word("as"):
            self.next()
            alias = self.field("a name after 'as'").name
        return Agg(func, arg, alias, tok.pos)

    def agg_list(self) -> tuple[Agg, ...]:
        aggs = [self.agg()]
        while True:
            self.accept(",")
            if self.is_word("by") or self.at_pipe_end() or self.is_word("span"):
                break
            aggs.append(self.agg())
        seen: set[str] = set()
        for a in aggs:
            if a.alias in seen:
                message = f"two aggregations are named {a.alias!r}; rename one with 'as'"
                raise QueryError(message, query=self.text, position=a.pos)
            seen.add(a.alias)
        return tuple(aggs)

    def by_clause(self) -> tuple[FieldName, ...]:
        if self.is_word("by"):
            self.next()
            return self.field_list()
        return ()

    def pipe_stats(self, pos: int) -> Stats:
        if self.at_pipe_end():
            raise self.error("expected an aggregation after | stats")
        return Stats(self.agg_list(), self.by_clause(), pos)

    def span_option(self) -> int | None:
        if not (self.is_word("span") and self.peek(1).kind == "op" and self.peek(1).text == "="):
            return None
        self.next()
        self.next()
        tok = self.peek()
        text = str(tok.value) if tok.kind in ("ident", "number", "string") else ""
        m = _SPAN.match(text.strip().lower())
        if not m or int(m.group(1)) <= 0:
            raise self.error("span must look like 30s, 1m, 5m, 1h or 1d", tok)
        self.next()
        return int(m.group(1)) * _UNIT_SECS[m.group(2)[0]]

    def pipe_timechart(self, pos: int) -> Timechart:
        span = self.span_option()
        aggs: tuple[Agg, ...] = (Agg("count", None, "count", pos),)
        if not self.at_pipe_end() and not self.is_word("by"):
            aggs = self.agg_list()
        span = self.span_option() or span
        by = self.by_clause()
        span = self.span_option() or span
        return Timechart(span or 60, aggs, by, pos)

    def pipe_dedup(self, pos: int) -> Dedup:
        if self.at_pipe_end():
            raise self.error("expected field names after | dedup")
        return Dedup(self.field_list(), pos)

    def pipe_top(self, pos: int, rare: bool = False) -> Top:
        n = self.count_arg(10, "the number of values")
        if self.at_pipe_end():
            raise self.error(f"expected a field after | {'rare' if rare else 'top'}")
        fields = self.field_list(stop_words=("by",))
        return Top(n, fields, self.by_clause(), rare, pos)

    def pipe_rare(self, pos: int) -> Top:
        return self.pipe_top(pos, rare=True)

    # ---- where expressions --------------------------------------------------------------------

    def enter(self) -> None:
        self.depth += 1
        if self.depth > 64:
            raise self.error("expression nests too deeply")

    def expr_or(self) -> Expr:
        self.enter()
        items = [self.expr_and()]
        while self.is_word("or"):
            self.next()
            items.append(self.expr_and())
        self.depth -= 1
        return items[0] if len(items) == 1 else Logic("or", tuple(items))

    def expr_and(self) -> Expr:
        items = [self.expr_not()]
        while self.is_word("and"):
            self.next()
            items.append(self.expr_not())
        return items[0] if len(items) == 1 else Logic("and", tuple(items))

    def expr_not(self) -> Expr:
        if self.is_word("not"):
            tok = self.next()
            self.enter()
            item = self.expr_not()
            self.depth -= 1
            return NotExpr(item, tok.pos)
        return self.predicate()

    def predicate(self) -> Expr:
        left = self.operand()
        tok = self.peek()
        if tok.kind == "op":
            self.next()
            op = {"==": "=", "<>": "!="}.get(tok.text, tok.text)
            return Cmp(op, left, self.operand(), tok.pos)
        negated = False
        if self.is_word("not") and (
            self.is_word("in", 1) or self.is_word("like", 1) or self.is_word("ilike", 1)
        ):
            self.next()
            negated = True
            tok = self.peek()
        if self.is_word("in"):
            self.next()
            self.expect("(", "'(' after IN")
            items = [self.literal()]
            while self.accept(","):
                items.append(self.literal())
            self.expect(")", "')' to close the IN list")
            return InList(left, tuple(items), negated, tok.pos)
        if self.is_word("like") or self.is_word("ilike"):
            ci = self.next().text.lower() == "ilike"
            pat = self.peek()
            if pat.kind != "string":
                raise self.error("LIKE needs a quoted pattern")
            self.next()
            return Like(left, str(pat.value), negated, ci, tok.pos)
        if self.is_word("is"):
            self.next()
            neg = False
            if self.is_word("not"):
                self.next()
                neg = True
            if not self.is_word("null"):
                raise self.error("expected NULL after IS")
            self.next()
            return IsNull(left, neg, tok.pos)
        return left

    def literal(self) -> Literal:
        tok = self.peek()
        if tok.kind == "string" or tok.kind == "number":
            self.next()
            return Literal(tok.value, tok.pos)
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.is_word(word):
                self.next()
                return Literal(value, tok.pos)
        raise self.error("expected a literal (a quoted string, a number, true, false or null)")

    def operand(self) -> Expr:
        tok = self.peek()
        if tok.kind == "(":
            self.next()
            inner = self.expr_or()
            self.expect(")", "')'")
            return inner
        if tok.kind in ("string", "number") or any(self.is_word(w) for w in ("true", "false", "null")):
            return self.literal()
        if tok.kind == "ident":
            if self.peek(1).kind == "(" and tok.text[0] != "`":
                name = tok.text.lower()
                if name not in WHERE_FUNCTIONS:
                    raise self.error(
                        f"unknown function {tok.text!r} (known: {', '.join(sorted(WHERE_FUNCTIONS))})"
                    )
                self.next()
                self.next()
                args: list[Expr] = []
                if self.peek().kind != ")":
                    args.append(self.expr_or())
                    while self.accept(","):
                        args.append(self.expr_or())
                self.expect(")", f"')' to close {name}(")
                lo, hi = WHERE_FUNCTIONS[name]
                if not lo <= len(args) <= hi:
                    raise self.error(f"{name}() takes {lo}{'' if lo == hi else f' to {hi}'} argument(s)", tok)
                return Call(name, tuple(args), tok.pos)
            self.next()
            return FieldName(str(tok.value), tok.pos)
        raise self.error("expected a field, a literal or '('")


def parse_pipes(text: str, start: int) -> tuple[Pipe, ...]:
    """Parse the pipes in ``text`` from ``start`` (the first ``|``, or the end of the text)."""
    if start >= len(text):
        return ()
    return PipeParser(text, _lex(text, start)).parse_all()


def parse_span(text: str) -> int:
    """Seconds in a span such as ``1m`` or ``15 minutes``; raises ``QueryError``."""
    m = _SPAN.match(text.strip().lower())
    if not m or int(m.group(1)) <= 0:
        raise QueryError("span must look like 30s, 1m, 5m, 1h or 1d", query=text, position=0)
    return int(m.group(1)) * _UNIT_SECS[m.group(2)[0]]
