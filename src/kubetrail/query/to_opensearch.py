"""Hunting query -> OpenSearch query DSL, for the scale-out hot store.

Index assumptions (the OpenSearch output writes documents this way): each schema column is a field
under its dotted name; ``message``, ``error.message`` and ``error.stack_trace`` are ``text``
(standard analyzer), the other strings ``keyword``, numbers numeric, times ``date``; JSON columns
(``kubernetes.audit.requestObject``, ``annotations``, ``labels``, ``attributes``) are
``flat_object`` fields, so a path is the column name, a dot and the dotted path.

The search part translates fully. Pipes translate where OpenSearch has an exact equivalent:
``where`` (comparisons, IN, LIKE, contains/startswith/endswith, IS NULL), ``fields`` (_source),
``sort`` and ``head`` before any aggregation, ``dedup`` on one field (collapse), ``stats``,
``timechart`` and ``top`` as aggregations (terms, date_histogram; ``dc`` uses ``cardinality`` and
percentiles use t-digest, both approximate, as OpenSearch is). Anything else — ``rare`` (no exact
equivalent), pipes after an aggregation, regex ``match()``, field-to-field comparisons — raises
``QueryError`` naming the pipe, instead of returning a query that answers something else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubetrail.errors import QueryError
from kubetrail.query.ast import (
    Agg,
    And,
    Call,
    Cmp,
    Compare,
    Dedup,
    Exists,
    Expr,
    FieldName,
    Fields,
    Head,
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
    Sort,
    Stats,
    Term,
    Timechart,
    Top,
    Where,
    Wild,
)
from kubetrail.query.fields import TEXT_COLUMNS
from kubetrail.query.parser import parse
from kubetrail.query.sqlgen import DEFAULT_FIELD
from kubetrail.query.to_sql import time_bound
from kubetrail.query.values import parse_number, parse_time
from kubetrail.schema import JSON_COLUMNS, SCHEMA, resolve

__all__ = ["MAX_BUCKETS", "to_opensearch"]

MAX_BUCKETS = 10_000
Json = dict[str, Any]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Translator:
    def __init__(self, text: str, now: datetime) -> None:
        self.text = text
        self.now = now

    def error(self, message: str, pos: int | None) -> QueryError:
        return QueryError(message, query=self.text, position=pos)

    def field(self, name: str, pos: int | None) -> tuple[str, str]:
        """(OpenSearch field path, kind) for a field name."""
        ref = resolve(name)
        if ref.is_json:
            segs = []
            for seg in ref.json_path:
                if seg.endswith("[*]"):
                    seg = seg[:-3]
                if "[" in seg:
                    raise self.error(f"array indexes like {seg!r} have no OpenSearch equivalent", pos)
                segs.append(seg)
            return ref.column + "." + ".".join(segs), "json"
        if ref.column in TEXT_COLUMNS and ref.column not in JSON_COLUMNS:
            return ref.column, "text"
        typ = str(SCHEMA.field(ref.column).type)
        if typ.startswith("timestamp"):
            return ref.column, "timestamp"
        if typ.startswith("int"):
            return ref.column, "int"
        return ref.column, "keyword"

    # ---- search -------------------------------------------------------------------------------

    def search(self, node: Search) -> Json:
        if isinstance(node, MatchAll):
            return {"match_all": {}}
        if isinstance(node, And):
            return {"bool": {"filter": [self.search(c) for c in node.children]}}
        if isinstance(node, Or):
            return {"bool": {"should": [self.search(c) for c in node.children], "minimum_should_match": 1}}
        if isinstance(node, Not):
            return {"bool": {"must_not": [self.search(node.child)]}}
        if isinstance(node, Exists):
            return {"exists": {"field": self.field(node.field, node.pos)[0]}}
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Compare):
            key = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[node.op]
            return self.range(node.field, node.field_pos, node.pos, {key: node.value})
        bounds: dict[str, str] = {}
        if node.low is not None:
            bounds["gte" if node.include_low else "gt"] = node.low
        if node.high is not None:
            bounds["lte" if node.include_high else "lt"] = node.high
        if not bounds:
            return {"exists": {"field": self.field(node.field, node.field_pos)[0]}}
        return self.range(node.field, node.field_pos, node.pos, bounds)

    def value(self, kind: str, text: str, pos: int) -> Any:
        if kind == "int":
            number = parse_number(text)
            if number is None:
                raise self.error(f"{text!r} is not a number", pos)
            return number
        if kind == "timestamp":
            parsed = parse_time(text, self.now)
            if parsed is None:
                raise self.error(f"{text!r} is not a time", pos)
            return _iso(parsed[0])
        return text

    def range(self, name: str, field_pos: int, pos: int, bounds: dict[str, str]) -> Json:
        path, kind = self.field(name, field_pos)
        if kind == "json" and all(parse_number(v) is not None for v in bounds.values()):
            kind = "int"
        return {"range": {path: {k: self.value(kind, v, pos) for k, v in bounds.items()}}}

    def term(self, node: Term) -> Json:
        path, kind = self.field(node.field or DEFAULT_FIELD, node.field_pos if node.field else node.pos)
        pattern = None if node.quoted else node.pattern
        if pattern is not None:
            if kind in ("int", "timestamp"):
                raise self.error(
                    f"wildcards on the {kind} field {path} have no OpenSearch equivalent", node.pos
                )
            wildcard: Json = {"value": _wildcard(pattern)}
            if kind == "text":
                wildcard["case_insensitive"] = True
            return {"wildcard": {path: wildcard}}
        if kind == "text":
            return {"match_phrase": {path: node.value}}
        if kind == "timestamp":
            parsed = parse_time(node.value, self.now)
            if parsed is None:
                raise self.error(f"{node.value!r} is not a time", node.pos)
            t, whole_day = parsed
            if whole_day:
                return {"range": {path: {"gte": _iso(t), "lt": _iso(t + timedelta(days=1))}}}
            return {"term": {path: _iso(t)}}
        return {"term": {path: self.value(kind, node.value, node.pos)}}

    # ---- where --------------------------------------------------------------------------------

    def where(self, expr: Expr) -> Json:
        if isinstance(expr, Logic):
            items = [self.where(i) for i in expr.items]
            if expr.op == "and":
                return {"bool": {"filter": items}}
            return {"bool": {"should": items, "minimum_should_match": 1}}
        if isinstance(expr, NotExpr):
            return {"bool": {"must_not": [self.where(expr.item)]}}
        if isinstance(expr, Cmp):
            left, right, op = expr.left, expr.right, expr.op
            if isinstance(left, Literal) and isinstance(right, FieldName):
                left, right = right, left
                op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
            if not (isinstance(left, FieldName) and isinstance(right, Literal)):
                raise self.error("only field-to-value comparisons translate to OpenSearch", expr.pos)
            path, kind = self.field(left.name, left.pos)
            if right.value is None:
                exists: Json = {"exists": {"field": path}}
                return {"bool": {"must_not": [exists]}} if op == "=" else exists
            value = (
                right.value if not isinstance(right.value, str) else self.value(kind, right.value, right.pos)
            )
            if op in ("=", "!="):
                match: Json = {"match_phrase" if kind == "text" else "term": {path: value}}
                return match if op == "=" else {"bool": {"must_not": [match]}}
            key = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[op]
            return {"range": {path: {key: value}}}
        if isinstance(expr, InList) and isinstance(expr.left, FieldName):
            path, _ = self.field(expr.left.name, expr.left.pos)
            terms: Json = {"terms": {path: [i.value for i in expr.items]}}
            return {"bool": {"must_not": [terms]}} if expr.negated else terms
        if isinstance(expr, IsNull) and isinstance(expr.left, FieldName):
            exists = {"exists": {"field": self.field(expr.left.name, expr.left.pos)[0]}}
            return exists if expr.negated else {"bool": {"must_not": [exists]}}
        if isinstance(expr, Like) and isinstance(expr.left, FieldName):
            path, _ = self.field(expr.left.name, expr.left.pos)
            body: Json = {"value": _like_to_wildcard(expr.pattern)}
            if expr.case_insensitive:
                body["case_insensitive"] = True
            query: Json = {"wildcard": {path: body}}
            return {"bool": {"must_not": [query]}} if expr.negated else query
        if isinstance(expr, Call) and expr.name in ("contains", "startswith", "endswith"):
            subject, needle = expr.args
            if (
                isinstance(subject, FieldName)
                and isinstance(needle, Literal)
                and isinstance(needle.value, str)
            ):
                path, _ = self.field(subject.name, subject.pos)
                escaped = _escape_wildcard(needle.value)
                value = {"contains": f"*{escaped}*", "startswith": f"{escaped}*", "endswith": f"*{escaped}"}
                return {"wildcard": {path: {"value": value[expr.name]}}}
        pos = getattr(expr, "pos", None)
        raise self.error("this | where expression has no exact OpenSearch equivalent", pos)

    # ---- aggregations -------------------------------------------------------------------------

    def metric(self, agg: Agg) -> Json | None:
        if agg.field is None:
            return None  # doc_count
        path, _ = self.field(agg.field.name, agg.field.pos)
        func = agg.func
        if func == "count":
            return {"value_count": {"field": path}}
        if func == "dc":
            return {"cardinality": {"field": path}}
        if func in ("avg", "sum", "min", "max"):
            return {func: {"field": path}}
        if func == "values":
            return {"terms": {"field": path, "size": MAX_BUCKETS, "order": {"_key": "asc"}}}
        percent = 50.0 if func == "median" else float(func[1:])
        return {"percentiles": {"field": path, "percents": [percent]}}

    def buckets(self, by: tuple[FieldName, ...], leaf: Json) -> Json:
        """Nested ``terms`` aggregations, one level per group key, with ``leaf`` innermost."""
        aggs = leaf
        for name in reversed(by):
            path, _ = self.field(name.name, name.pos)
            level: Json = {"terms": {"field": path, "size": MAX_BUCKETS}}
            if aggs:
                level["aggs"] = aggs
            aggs = {name.name: level}
        return aggs

    def metrics(self, aggs: tuple[Agg, ...]) -> Json:
        out: Json = {}
        for a in aggs:
            body = self.metric(a)
            if body is not None:
                out[a.alias] = body
        return out


def _escape_wildcard(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def _wildcard(pattern: Pattern) -> str:
    return "".join(
        "*" if p is Wild.STAR else "?" if p is Wild.ONE else _escape_wildcard(str(p)) for p in pattern
    )


def _like_to_wildcard(pattern: str) -> str:
    return "".join("*" if c == "%" else "?" if c == "_" else _escape_wildcard(c) for c in pattern)


def to_opensearch(
    text: str,
    since: datetime | str | int | None = None,
    until: datetime | str | int | None = None,
    *,
    now: datetime | None = None,
    limit: int | None = None,
) -> Json:
    """The OpenSearch ``_search`` request body for a hunting query (see the module docstring)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    q = parse(text)
    tr = _Translator(text, now)
    filters = [] if isinstance(q.search, MatchAll) else [tr.search(q.search)]
    start, end = time_bound(since, now, "since"), time_bound(until, now, "until")
    if start or end:
        bounds = {k: _iso(v) for k, v in (("gte", start), ("lt", end)) if v is not None}
        filters.append({"range": {"@timestamp": bounds}})
    body: Json = {"sort": [{"@timestamp": "desc"}]}
    aggregated = False
    for pipe in q.pipes:
        if aggregated:
            raise tr.error(
                "pipes after an aggregation have no OpenSearch equivalent; run them in the embedded store",
                pipe.pos,
            )
        if isinstance(pipe, Where):
            filters.append(tr.where(pipe.expr))
        elif isinstance(pipe, Fields):
            body["_source"] = [tr.field(n.name, n.pos)[0] for n in pipe.names]
        elif isinstance(pipe, Sort):
            body["sort"] = [
                {tr.field(k.field.name, k.field.pos)[0]: "desc" if k.descending else "asc"} for k in pipe.keys
            ]
        elif isinstance(pipe, Head):
            body["size"] = min(pipe.n, body.get("size", pipe.n))
        elif isinstance(pipe, Dedup):
            if len(pipe.fields) != 1 or "collapse" in body:
                raise tr.error(
                    "OpenSearch collapses on exactly one field; dedup more fields in the embedded store",
                    pipe.pos,
                )
            body["collapse"] = {"field": tr.field(pipe.fields[0].name, pipe.fields[0].pos)[0]}
        elif isinstance(pipe, Stats):
            body["aggs"] = tr.buckets(pipe.by, tr.metrics(pipe.aggs)) if pipe.by else tr.metrics(pipe.aggs)
            aggregated = True
        elif isinstance(pipe, Timechart):
            inner = tr.buckets(pipe.by, tr.metrics(pipe.aggs))
            histogram: Json = {
                "date_histogram": {"field": "@timestamp", "fixed_interval": f"{pipe.span_secs}s"}
            }
            if inner:
                histogram["aggs"] = inner
            body["aggs"] = {"_time": histogram}
            aggregated = True
        elif isinstance(pipe, Top):
            if pipe.rare:
                raise tr.error(
                    "rare has no exact OpenSearch equivalent (ascending terms order is approximate)",
                    pipe.pos,
                )
            if len(pipe.fields) != 1:
                raise tr.error("top over several fields has no exact OpenSearch equivalent", pipe.pos)
            name = pipe.fields[0]
            leaf = {name.name: {"terms": {"field": tr.field(name.name, name.pos)[0], "size": pipe.n}}}
            body["aggs"] = tr.buckets(pipe.by, leaf)
            aggregated = True
    if aggregated:
        body["size"] = 0
        body.pop("sort", None)
        body.pop("_source", None)
    elif limit is not None:
        body["size"] = min(limit, body.get("size", limit))
    body["query"] = {"bool": {"filter": filters}} if filters else {"match_all": {}}
    return body
