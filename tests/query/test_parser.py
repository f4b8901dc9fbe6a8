"""The parser: tree shapes, precedence, escapes, and errors that point at the offending position."""

from __future__ import annotations

import pytest

from kubetrail.errors import QueryError
from kubetrail.query import compile_query, parse
from kubetrail.query.ast import (
    And,
    Compare,
    Exists,
    FieldName,
    Head,
    MatchAll,
    Not,
    Or,
    Range,
    Sort,
    SortKey,
    Stats,
    Term,
    Timechart,
    Top,
    Where,
    Wild,
)


def test_precedence_not_and_or() -> None:
    q = parse("a OR b c AND NOT d")
    assert isinstance(q.search, Or)
    left, right = q.search.children
    assert left == Term(None, "a", 0)
    assert isinstance(right, And) and len(right.children) == 3
    assert isinstance(right.children[2], Not)


def test_field_values_escapes_wildcards_phrases() -> None:
    assert parse("user.username:system\\:anonymous").search == Term(
        "user.username", "system:anonymous", 14, field_pos=0
    )
    t = parse("sourceIPs:203.0.113.*").search
    assert isinstance(t, Term) and t.pattern == ("203.0.113.", Wild.STAR)
    t = parse('message:"a*b \\" c"').search
    assert isinstance(t, Term) and t.quoted and t.value == 'a*b " c'
    t = parse("x:a\\*b").search
    assert isinstance(t, Term) and t.pattern is None and t.value == "a*b"
    assert parse("_exists_:objectRef.name").search == Exists("objectRef.name", 9)
    assert parse("verb:*").search == Exists("verb", 0)
    assert parse("*").search == MatchAll(0)
    assert parse("   ").search == MatchAll(3)


def test_ranges_and_comparisons() -> None:
    assert parse("code:[400 TO 499]").search == Range("code", "400", "499", True, True, 5, 0)
    assert parse("code:{* TO 500]").search == Range("code", None, "500", False, True, 5, 0)
    assert parse("code:>=400").search == Compare("code", ">=", "400", 5, 0)
    assert parse("t:<now-1h").search == Compare("t", "<", "now-1h", 2, 0)


def test_field_group_and_prefix_operators() -> None:
    q = parse("verb:(get OR list) -user.username:bob +ns:x !y")
    assert isinstance(q.search, And)
    group, neg, plus, bang = q.search.children
    assert isinstance(group, Or) and all(isinstance(c, Term) and c.field == "verb" for c in group.children)
    assert isinstance(neg, Not) and isinstance(plus, Term) and isinstance(bang, Not)
    # lower-case and/or are words, like Lucene
    q = parse("this and that")
    assert isinstance(q.search, And) and len(q.search.children) == 3


def test_pipes() -> None:
    q = parse(
        "verb:get | where responseStatus.code >= 400 | stats count() avg(x) as a by user.username, verb "
        "| sort -count, a | head 5 | timechart span=5m count() by ns | top 3 sourceIPs by verb | rare ns"
    )
    where, stats, sort, head, chart, top, rare = q.pipes
    assert isinstance(where, Where)
    assert isinstance(stats, Stats) and [a.alias for a in stats.aggs] == ["count", "a"]
    assert [b.name for b in stats.by] == ["user.username", "verb"]
    text = q.text
    c, a = text.index("-count") + 1, text.index(", a |") + 2
    assert sort == Sort(
        (SortKey(FieldName("count", c), True), SortKey(FieldName("a", a), False)), text.index("sort")
    )
    assert head == Head(5, text.index("head"))
    assert isinstance(chart, Timechart) and chart.span_secs == 300
    assert isinstance(top, Top) and top.n == 3 and not top.rare and [b.name for b in top.by] == ["verb"]
    assert isinstance(rare, Top) and rare.rare and rare.n == 10
    # `||` is OR in the search, not a pipe
    assert isinstance(parse("a || b").search, Or)
    assert parse("a | head").pipes == (Head(10, 4),)


@pytest.mark.parametrize(
    ("query", "position", "fragment"),
    [
        ("verb:get AND", 12, "after AND"),
        ("(verb:get", 0, "missing ')'"),
        ("verb:get)", 8, "unbalanced"),
        ('message:"unterminated', 8, "unterminated"),
        ("code:[1 TO", 5, "unterminated range"),
        ("code:[1 2]", 8, "TO"),
        ("code:[1 TO 2", 5, "close the range"),
        ("verb: get", 5, "expected a value"),
        ("OR x", 0, "needs a term"),
        ("x NOT", 5, "after NOT"),
        ("responseStatus.code:abc", 20, "is a number"),
        ("responseStatus.code:>abc", 20, "is a number"),
        ("@timestamp:>yesterday", 11, "not a time"),
        ("@timestamp:2024*", 11, "wildcards"),
        ("x | bogus", 4, "unknown pipe"),
        ("x | head -1", 9, "whole number"),
        ("x | head 0", 9, "whole number"),
        ("x | stats", 9, "expected an aggregation"),
        ("x | stats foo(x)", 10, "unknown aggregation"),
        ("x | stats avg()", 10, "needs a field"),
        ("x | stats count() count()", 18, "named 'count'"),
        ("x | where", 9, "expected an expression"),
        ("x | where a = ", 14, "expected a field"),
        ("x | where a = 'b", 14, "unterminated"),
        ("x | where nope(a)", 10, "unknown function"),
        ("x | where lower(a)", 10, "not a condition"),
        ("x | where a", 10, "needs a condition"),
        ("x | where match(message, '(')", 25, "invalid regular expression"),
        ("x | where responseStatus.code > 'abc'", 32, "is a number"),
        ("x | timechart span=7", 19, "span"),
        ("x | stats count() | timechart count()", 20, "timechart needs events"),
        ("x | stats count() by a | sort b", 30, "unknown field 'b'"),
        ("x | stats avg(sourceIPs)", 14, "is a list"),
        ("x | stats sum(@timestamp)", 14, "is a timestamp"),
        ("x | fields a b ;", 15, "unexpected"),
        ("a\\", 1, "dangling escape"),
        ('x:"\x00"', 2, "NUL"),
    ],
)
def test_errors_point_at_the_position(query: str, position: int, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_query(query)
    err = info.value
    assert err.position == position, str(err)
    assert fragment in str(err)
    assert err.query == query
    assert err.code == "KT-QUERY"
    # the message carries a caret under the position
    lines = str(err).splitlines()
    assert lines[-1].index("^") - 2 == position


def test_nesting_is_bounded() -> None:
    with pytest.raises(QueryError, match="nests"):
        parse("(" * 500 + "x" + ")" * 500)
    with pytest.raises(QueryError, match="nests"):
        parse("NOT " * 500 + "x")
    with pytest.raises(QueryError, match="nests"):
        parse("| where " + "(" * 500 + "a = 1" + ")" * 500)
