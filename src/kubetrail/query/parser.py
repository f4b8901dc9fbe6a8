"""Recursive-descent parser for the search part of a hunting query (Lucene/KQL style).

The search grammar is context sensitive (``:`` only separates a field inside a word, ``[`` opens a
range only after ``field:``, ``-`` negates only at the start of a word), so the parser scans the
text directly instead of running a separate lexer. It stops at the first ``|`` (a single bar, not
``||``) and hands the rest to :mod:`kubetrail.query.pipes`.

Grammar (precedence NOT > AND > OR; two clauses side by side are an implicit AND)::

    query   := search ('|' pipe)*
    search  := or?                              empty or '*' means every event
    or      := and (('OR' | '||') and)*
    and     := unary (('AND' | '&&')? unary)*
    unary   := ('NOT' | '!' | '-') unary | '+' unary | primary
    primary := '(' or ')' | '"phrase"' | field ':' value | word
    value   := '(' or ')' | '[' b 'TO' b ']' | '{' b 'TO' b '}' | ('>'|'>='|'<'|'<=') word
             | '"phrase"' | word | '*'
"""

from __future__ import annotations

from kubetrail.errors import QueryError
from kubetrail.query.ast import (
    And,
    Compare,
    Exists,
    MatchAll,
    Not,
    Or,
    Pattern,
    Query,
    Range,
    Search,
    Term,
    Wild,
)

__all__ = ["MAX_DEPTH", "MAX_QUERY_CHARS", "parse", "parse_search"]

MAX_DEPTH = 64
MAX_QUERY_CHARS = 64 * 1024
_WS = " \t\r\n"
_WORD_STOP = frozenset(_WS + '()"|')
_KEYWORDS = {"AND": "and", "OR": "or", "NOT": "not", "&&": "and", "||": "or"}
_EXISTS_FIELD = "_exists_"


class _Word:
    __slots__ = ("end", "pattern", "raw", "start", "value")

    def __init__(self, value: str, pattern: Pattern | None, start: int, end: int, raw: str) -> None:
        self.value = value
        self.pattern = pattern
        self.start = start
        self.end = end
        self.raw = raw


class SearchParser:
    """Parses ``text[start:]`` up to the first pipe; ``self.i`` is where it stopped."""

    def __init__(self, text: str, start: int = 0) -> None:
        self.text = text
        self.i = start
        self.n = len(text)
        self.depth = 0
        self.default_field: str | None = None
        self.default_field_pos: int | None = None

    # ---- scanning helpers ---------------------------------------------------------------------

    def error(self, message: str, position: int | None = None) -> QueryError:
        return QueryError(message, query=self.text, position=self.i if position is None else position)

    def skip_ws(self) -> None:
        while self.i < self.n and self.text[self.i] in _WS:
            self.i += 1

    def at_end(self) -> bool:
        """End of the search part: end of text or a single ``|``."""
        self.skip_ws()
        if self.i >= self.n:
            return True
        return self.text[self.i] == "|" and not self.text.startswith("||", self.i)

    def peek_keyword(self) -> str | None:
        """``and``/``or``/``not`` when the next word is an operator (upper case only, like Lucene)."""
        self.skip_ws()
        for word, op in _KEYWORDS.items():
            if self.text.startswith(word, self.i):
                after = self.i + len(word)
                if (
                    word in ("&&", "||")
                    or after >= self.n
                    or self.text[after] in _WS + '("'
                    or (op == "not" and self.text[after] == "-")
                ):
                    return op
        return None

    def take_keyword(self, op: str) -> None:
        for word, kw in _KEYWORDS.items():
            if kw == op and self.text.startswith(word, self.i):
                self.i += len(word)
                return
        raise self.error(f"expected {op.upper()}")  # pragma: no cover - callers peek first

    def read_word(self, stop: frozenset[str] = _WORD_STOP, stop_colon: bool = True) -> _Word:
        """A bare word with ``\\`` escapes; unescaped ``*``/``?`` make it a wildcard pattern."""
        start = self.i
        parts: list[str | Wild] = []
        buf: list[str] = []
        value: list[str] = []
        wild = False
        while self.i < self.n:
            c = self.text[self.i]
            if c == "\\":
                if self.i + 1 >= self.n:
                    raise self.error("dangling escape '\\' at the end of the query")
                c = self.text[self.i + 1]
                buf.append(c)
                value.append(c)
                self.i += 2
                continue
            if c in stop or (stop_colon and c == ":"):
                break
            if c in "*?":
                wild = True
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(Wild.STAR if c == "*" else Wild.ONE)
            else:
                buf.append(c)
            value.append(c)
            self.i += 1
        if buf:
            parts.append("".join(buf))
        return _Word("".join(value), tuple(parts) if wild else None, start, self.i, self.text[start : self.i])

    def read_phrase(self) -> tuple[str, int]:
        start = self.i
        self.i += 1  # opening quote
        out: list[str] = []
        while self.i < self.n:
            c = self.text[self.i]
            if c == "\\" and self.i + 1 < self.n:
                out.append(self.text[self.i + 1])
                self.i += 2
                continue
            if c == '"':
                self.i += 1
                return "".join(out), start
            out.append(c)
            self.i += 1
        raise self.error("unterminated quoted phrase", start)

    # ---- grammar ------------------------------------------------------------------------------

    def parse(self) -> Search:
        if self.at_end():
            return MatchAll(self.i)
        node = self.parse_or()
        if not self.at_end():
            c = self.text[self.i]
            if c == ")":
                raise self.error("unbalanced ')'")
            raise self.error(f"unexpected {c!r}")
        return node

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"query nests deeper than {MAX_DEPTH} levels")

    def parse_or(self) -> Search:
        self.enter()
        items = [self.parse_and()]
        while self.peek_keyword() == "or":
            self.take_keyword("or")
            if self.clause_ends():
                raise self.error("expected a search term after OR")
            items.append(self.parse_and())
        self.depth -= 1
        return items[0] if len(items) == 1 else Or(tuple(items))

    def clause_ends(self) -> bool:
        return self.at_end() or self.text[self.i] == ")"

    def parse_and(self) -> Search:
        items = [self.parse_unary()]
        while True:
            kw = self.peek_keyword()
            if kw == "or" or self.clause_ends():
                break
            if kw == "and":
                self.take_keyword("and")
                if self.clause_ends():
                    raise self.error("expected a search term after AND")
            items.append(self.parse_unary())
        flat: list[Search] = []
        for item in items:
            flat.extend(item.children if isinstance(item, And) else (item,))
        return flat[0] if len(flat) == 1 else And(tuple(flat))

    def parse_unary(self) -> Search:
        self.skip_ws()
        start = self.i
        kw = self.peek_keyword()
        if kw == "and" or kw == "or":
            raise self.error(
                f"{self.text[self.i : self.i + (2 if kw == 'or' else 3)]} needs a term before it"
            )
        negate = False
        if kw == "not":
            self.take_keyword("not")
            negate = True
        elif self.i < self.n and self.text[self.i] in "-!" and self.i + 1 < self.n:
            if self.text[self.i + 1] not in _WS + ")|":
                self.i += 1
                negate = True
        elif (
            self.text.startswith("+", self.i)
            and self.i + 1 < self.n
            and self.text[self.i + 1] not in _WS + ")|"
        ):
            self.i += 1
        if negate:
            self.skip_ws()
            if self.clause_ends():
                raise self.error("expected a search term after NOT")
            self.enter()
            child = self.parse_unary()
            self.depth -= 1
            return Not(child, start)
        return self.parse_primary()

    def parse_primary(self) -> Search:
        self.skip_ws()
        c = self.text[self.i]
        if c == "(":
            open_pos = self.i
            self.i += 1
            if self.clause_ends():
                raise self.error("empty parentheses", open_pos)
            node = self.parse_or()
            self.skip_ws()
            if self.i >= self.n or self.text[self.i] != ")":
                raise self.error("missing ')' for the '(' here", open_pos)
            self.i += 1
            return node
        if c == ")":
            raise self.error("unbalanced ')'")
        if c == '"':
            value, pos = self.read_phrase()
            return Term(self.default_field, value, pos, quoted=True, field_pos=self.default_field_pos)
        word = self.read_word()
        if self.i < self.n and self.text[self.i] == ":" and word.value:
            self.i += 1
            return self.parse_field_value(word)
        if not word.raw:
            raise self.error(f"unexpected {self.text[self.i]!r}")
        if word.pattern == (Wild.STAR,) and self.default_field is None:
            return MatchAll(word.start)
        return Term(
            self.default_field, word.value, word.start, pattern=word.pattern, field_pos=self.default_field_pos
        )

    def parse_field_value(self, field_word: _Word) -> Search:
        field, field_pos = field_word.value, field_word.start
        if self.i >= self.n or self.text[self.i] in _WS + ")|":
            raise self.error(f"expected a value after '{field_word.raw}:'")
        c = self.text[self.i]
        if field == _EXISTS_FIELD:
            name = self.read_word()
            if not name.value:
                raise self.error("expected a field name after _exists_:")
            return Exists(name.value, name.start)
        if c == "(":
            if self.default_field is not None:
                raise self.error("a field group cannot be nested in another field group")
            self.default_field, self.default_field_pos = field, field_pos
            try:
                return self.parse_primary()
            finally:
                self.default_field = self.default_field_pos = None
        if c in "[{":
            return self.parse_range(field, field_pos)
        if c in "<>":
            op_start = self.i
            op = c
            self.i += 1
            if self.i < self.n and self.text[self.i] == "=":
                op += "="
                self.i += 1
            self.skip_ws()
            if self.i < self.n and self.text[self.i] == '"':
                value, _ = self.read_phrase()
            else:
                word = self.read_word(stop_colon=False)
                if not word.value:
                    raise self.error(f"expected a value after '{op}'")
                value = word.value
            return Compare(field, op, value, op_start, field_pos)
        if c == '"':
            value, pos = self.read_phrase()
            return Term(field, value, pos, quoted=True, field_pos=field_pos)
        word = self.read_word(stop_colon=False)
        if word.pattern == (Wild.STAR,):
            return Exists(field, field_pos)
        return Term(field, word.value, word.start, pattern=word.pattern, field_pos=field_pos)

    def parse_range(self, field: str, field_pos: int) -> Range:
        open_pos = self.i
        include_low = self.text[self.i] == "["
        self.i += 1
        low = self.range_bound(open_pos)
        self.skip_ws()
        if not self.text.startswith("TO", self.i):
            raise self.error("expected 'TO' in the range")
        self.i += 2
        high = self.range_bound(open_pos)
        self.skip_ws()
        if self.i >= self.n or self.text[self.i] not in "]}":
            raise self.error(
                "expected ']' or '}' to close the range", self.i if self.i < self.n else open_pos
            )
        include_high = self.text[self.i] == "]"
        self.i += 1
        if low is None and high is None:
            return Range(field, None, None, include_low, include_high, open_pos, field_pos)
        return Range(field, low, high, include_low, include_high, open_pos, field_pos)

    def range_bound(self, open_pos: int) -> str | None:
        self.skip_ws()
        if self.i >= self.n:
            raise self.error("unterminated range", open_pos)
        if self.text[self.i] == '"':
            return self.read_phrase()[0]
        word = self.read_word(stop=_WORD_STOP | {"]", "}"}, stop_colon=False)
        if not word.raw:
            raise self.error("expected a range bound")
        if word.pattern == (Wild.STAR,):
            return None
        return word.value


def parse_search(text: str, start: int = 0) -> tuple[Search, int]:
    """Parse the search part of ``text`` from ``start``; returns the tree and where it stopped."""
    parser = SearchParser(text, start)
    node = parser.parse()
    return node, parser.i


def parse(text: str) -> Query:
    """Parse a whole hunting query (search and pipes) into a :class:`Query`; raises ``QueryError``."""
    from kubetrail.query.pipes import parse_pipes

    if not isinstance(text, str):
        raise QueryError("the query must be a string")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters", query=text[:200])
    search, end = parse_search(text)
    pipes = parse_pipes(text, end)
    return Query(text, search, pipes)
