"""A pySigma backend that compiles Sigma detections to DuckDB SQL boolean expressions over the schema.

Each rule becomes one boolean expression over the columns of a kubetrail batch (``"event.dataset" =
'audit' AND lower("kubernetes.audit.verb") = 'create' ...``), so many rules can be evaluated together
in one DuckDB query (:mod:`kubetrail.detect.engine`).

What the generic text-query templates cannot express, and why this backend overrides the leaf
conversions instead of only setting templates:

* **Field targets.** A field name (after the pipeline, :mod:`kubetrail.detect.pipeline`) resolves to
  a column, a path inside a JSON column (``json_extract_string``), a list column (``sourceIPs``,
  ``user.groups``) or a JSON path with ``[*]`` (every container's image). List-valued targets match
  when ANY element matches: ``len(list_filter(list, lambda x: <predicate on x>)) > 0``.
* **Case-insensitive strings**, as Sigma specifies: the column is lowered, the value lowered once at
  compile time. Columns whose values Kubernetes already constrains to lower case (verbs, resources,
  namespaces, API groups) skip the ``lower()`` — same result, cheaper.
* **Type mismatches never fail at run time:** a string compared with an integer column casts the
  column to text (so SigmaHQ's ``responseStatus.code: 'ALLOW'`` compiles and runs — and can never
  match, since the code is a number); JSON values are compared as text, numbers with ``TRY_CAST``.
* **NULL-safe negation:** ``NOT coalesce(x, false)``, because in SQL ``NOT (NULL = 'a')`` is NULL,
  while in Sigma ``not selection`` is true for an event without the field.
* **CIDR** matching for IPv4 through the ``kt_ipv4`` macro (:data:`SQL_MACROS`), which every
  connection that runs compiled rules must create (the engine does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any, ClassVar, cast

import pyarrow as pa
from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from kubetrail.schema import SCHEMA, resolve

__all__ = ["SQL_MACROS", "DuckDBBackend", "FieldTarget", "field_target", "sql_string"]

# Macros the compiled SQL relies on; run these on every connection before executing rules.
SQL_MACROS: tuple[str, ...] = (
    # IPv4 dotted quad -> integer (NULL for anything else, IPv6 included).
    "CREATE OR REPLACE MACRO kt_ipv4(s) AS CASE WHEN regexp_full_match(s, "
    "'(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})') THEN "
    "TRY_CAST(split_part(s, '.', 1) AS BIGINT) * 16777216 + TRY_CAST(split_part(s, '.', 2) AS BIGINT) * 65536"
    " + TRY_CAST(split_part(s, '.', 3) AS BIGINT) * 256 + TRY_CAST(split_part(s, '.', 4) AS BIGINT) END",
    # registry host of an image reference; Docker Hub short names (nginx, bitnami/redis) -> docker.io
    "CREATE OR REPLACE MACRO kt_image_registry(s) AS CASE WHEN regexp_matches(s, '^[^/]*[.:][^/]*/') "
    "OR starts_with(s, 'localhost/') THEN lower(split_part(s, '/', 1)) ELSE 'docker.io' END",
)

# Columns whose values the Kubernetes API (or kubetrail) only ever writes in lower case.
LOWERCASE_COLUMNS: frozenset[str] = frozenset(
    {
        "event.dataset",
        "event.module",
        "event.outcome",
        "stream",
        "kubernetes.audit.verb",
        "kubernetes.audit.objectRef.resource",
        "kubernetes.audit.objectRef.subresource",
        "kubernetes.audit.objectRef.namespace",
        "kubernetes.audit.objectRef.apiGroup",
        "kubernetes.namespace",
    }
)

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INDEX = re.compile(r"^(.*?)((?:\[(?:\*|\d+)\])*)$")


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _quote_column(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class FieldTarget:
    """How a field is read in SQL: the expression, whether it is a list, and its value kind."""

    sql: str
    is_list: bool
    kind: str  # "str", "int", "float", "bool", "ts" or "json" (text extracted from JSON)
    lowercase: bool = False  # values are always lower case: skip lower()


def _json_path(parts: tuple[str, ...]) -> str:
    out = "$"
    for part in parts:
        match = _INDEX.match(part)
        key, index = (match.group(1), match.group(2)) if match else (part, "")
        if key:
            out += "." + (key if _SIMPLE_KEY.match(key) else '"' + key.replace('"', '\\"') + '"')
        out += index
    return out


def _kind(data_type: pa.DataType) -> str:
    if pa.types.is_integer(data_type):
        return "int"
    if pa.types.is_floating(data_type):
        return "float"
    if pa.types.is_boolean(data_type):
        return "bool"
    if pa.types.is_timestamp(data_type):
        return "ts"
    return "str"


def field_target(name: str) -> FieldTarget:
    """Resolve a (pipeline-mapped) field name to its SQL target."""
    ref = resolve(name)
    column = _quote_column(ref.column)
    if ref.is_json:
        path = _json_path(ref.json_path)
        expr = f"json_extract_string({column}, {sql_string(path)})"
        return FieldTarget(expr, "[*]" in path, "json")
    data_type = SCHEMA.field(ref.column).type
    if pa.types.is_list(data_type):
        return FieldTarget(column, True, _kind(data_type.value_type))
    return FieldTarget(column, False, _kind(data_type), ref.column in LOWERCASE_COLUMNS)


def _any(target: FieldTarget, predicate: Callable[[str], str]) -> str:
    """Apply a predicate to a scalar target, or to any element of a list target."""
    if target.is_list:
        return f"(len(list_filter({target.sql}, lambda x: {predicate('x')})) > 0)"
    return predicate(target.sql)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class DuckDBBackend(TextQueryBackend):
    """Sigma -> DuckDB SQL boolean expressions over kubetrail's flat Arrow schema."""

    name: ClassVar[str] = "kubetrail DuckDB"
    formats: ClassVar[dict[str, str]] = {"default": "DuckDB SQL boolean expression"}
    requires_pipeline: ClassVar[bool] = False

    group_expression: ClassVar[str] = "({expr})"
    token_separator: str = " "
    or_token: ClassVar[str] = "OR"
    and_token: ClassVar[str] = "AND"
    not_token: ClassVar[str] = "NOT"
    eq_token: ClassVar[str] = " = "
    str_quote: ClassVar[str] = "'"
    escape_char: ClassVar[str] = "'"
    wildcard_multi: ClassVar[str] = "%"
    wildcard_single: ClassVar[str] = "_"
    convert_or_as_in: ClassVar[bool] = True
    convert_and_as_in: ClassVar[bool] = False
    in_expressions_allow_wildcards: ClassVar[bool] = False
    field_in_list_expression: ClassVar[str] = "{field} {op} ({list})"
    or_in_operator: ClassVar[str] = "IN"
    list_separator: ClassVar[str] = ", "
    # correlation conversion is done by kubetrail.detect.correlations (streaming state), not here
    correlation_methods: ClassVar[dict[str, str]] = {}

    _override: FieldTarget | None = None

    # ---- helpers -------------------------------------------------------------------------------
    def _target(self, name: str) -> FieldTarget:
        """Where a field is read; while building a list element's predicate, the element ``x``."""
        return self._override if self._override is not None else field_target(name)

    def escape_and_quote_field(self, field_name: str) -> str:
        return field_target(field_name).sql

    def _string_predicate(self, target: FieldTarget, value: SigmaString, cased: bool) -> Callable[[str], str]:
        parts = list(value.s)
        if any(not isinstance(p, (str, SpecialChars)) for p in parts):
            raise SigmaFeatureNotSupportedByBackendError(f"unresolved placeholder in value {value}")
        lower = not cased and not (target.lowercase and str(value) == str(value).lower())

        def text(p: str) -> str:
            return p.lower() if not cased else p

        def column(x: str) -> str:
            expr = x if target.kind in ("str", "json") else f"CAST({x} AS VARCHAR)"
            return f"lower({expr})" if lower else expr

        plain = [p for p in parts if isinstance(p, str)]
        specials = [p for p in parts if isinstance(p, SpecialChars)]
        if not specials:
            literal = sql_string(text("".join(plain)))
            return lambda x: f"{column(x)} = {literal}"
        if all(p is SpecialChars.WILDCARD_MULTI for p in parts):
            return lambda x: f"({x} IS NOT NULL)"
        multi = SpecialChars.WILDCARD_MULTI
        inner = parts[1:-1]
        if (
            len(parts) == 3
            and parts[0] is multi
            and parts[-1] is multi
            and all(isinstance(p, str) for p in inner)
        ):
            lit = sql_string(text(str(parts[1])))
            return lambda x: f"contains({column(x)}, {lit})"
        if len(parts) == 2 and parts[-1] is multi and isinstance(parts[0], str):
            lit = sql_string(text(parts[0]))
            return lambda x: f"starts_with({column(x)}, {lit})"
        if len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
            lit = sql_string(text(parts[1]))
            return lambda x: f"ends_with({column(x)}, {lit})"
        pattern = "".join(
            _like_escape(text(p)) if isinstance(p, str) else ("%" if p is multi else "_") for p in parts
        )
        lit = sql_string(pattern)
        return lambda x: f"({column(x)} LIKE {lit} ESCAPE '\\')"

    # ---- leaf conversions ------------------------------------------------------------------------
    def convert_condition_field_eq_val_str(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaString)  # dispatcher guarantees the type
        target = self._target(cond.field)
        return _any(target, self._string_predicate(target, cond.value, False))

    def convert_condition_field_eq_val_str_case_sensitive(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCasedString)
        target = self._target(cond.field)
        return _any(target, self._string_predicate(target, cond.value, True))

    def convert_condition_field_eq_val_num(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaNumber)
        target = self._target(cond.field)
        number = str(cond.value.number)
        if target.kind in ("int", "float"):
            return _any(target, lambda x: f"{x} = {number}")
        return _any(target, lambda x: f"TRY_CAST({x} AS DOUBLE) = {number}")

    def convert_condition_field_eq_val_bool(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaBool)
        target = self._target(cond.field)
        word = "true" if cond.value.boolean else "false"
        if target.kind == "bool":
            return _any(target, lambda x: f"{x} = {word}")
        return _any(target, lambda x: f"lower(CAST({x} AS VARCHAR)) = '{word}'")

    def convert_condition_field_eq_val_re(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaRegularExpression)
        target = self._target(cond.field)
        flags = "".join(
            {
                SigmaRegularExpressionFlag.IGNORECASE: "i",
                SigmaRegularExpressionFlag.MULTILINE: "m",
                SigmaRegularExpressionFlag.DOTALL: "s",
            }[f]
            for f in sorted(cond.value.flags, key=lambda f: f.name)
        )
        pattern = sql_string(str(cond.value.regexp))
        opts = f", {sql_string(flags)}" if flags else ""
        return _any(target, lambda x: f"regexp_matches(CAST({x} AS VARCHAR), {pattern}{opts})")

    def convert_condition_field_eq_val_cidr(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCIDRExpression)
        network = cond.value.network
        target = self._target(cond.field)
        if isinstance(network, IPv4Network):
            low, high = int(network.network_address), int(network.broadcast_address)
            return _any(target, lambda x: f"(kt_ipv4({x}) BETWEEN {low} AND {high})")
        # IPv6: compare the textual prefix of the network (exact for prefixes on a group boundary)
        if network.prefixlen % 16:
            raise SigmaFeatureNotSupportedByBackendError(
                f"IPv6 CIDR {network} must have a prefix length divisible by 16"
            )
        groups = network.network_address.exploded.split(":")[: network.prefixlen // 16]
        prefix = sql_string(":".join(g.lstrip("0") or "0" for g in groups) + ":")
        return _any(target, lambda x: f"starts_with(lower({x}), {prefix})")

    def convert_condition_field_compare_op_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCompareExpression)
        ops = {
            CompareOperators.LT: "<",
            CompareOperators.LTE: "<=",
            CompareOperators.GT: ">",
            CompareOperators.GTE: ">=",
            CompareOperators.NEQ: "<>",
        }
        op = ops[cond.value.op]
        number = str(cond.value.number.number)
        target = self._target(cond.field)
        if target.kind in ("int", "float"):
            return _any(target, lambda x: f"{x} {op} {number}")
        return _any(target, lambda x: f"TRY_CAST({x} AS DOUBLE) {op} {number}")

    def convert_condition_field_eq_field(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        other = field_target(cond.value.field)  # type: ignore[attr-defined]
        target = self._target(cond.field)
        return f"(CAST({target.sql} AS VARCHAR) = CAST({other.sql} AS VARCHAR))"

    def convert_condition_field_eq_val_null(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        target = self._target(cond.field)
        if target.is_list:
            return f"(coalesce(len({target.sql}), 0) = 0)"
        return f"({target.sql} IS NULL)"

    def convert_condition_field_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        target = self._target(cond.field)
        if target.is_list:
            return f"(coalesce(len({target.sql}), 0) > 0)"
        return f"({target.sql} IS NOT NULL)"

    def convert_condition_field_not_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return self.convert_condition_field_eq_val_null(cond, state)

    def convert_condition_field_eq_val_timestamp_part(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        part = cond.value.timestamp_part.name.lower()  # type: ignore[attr-defined]
        target = self._target(cond.field)
        return f"(date_part('{part}', {target.sql}) = {cond.value.number})"  # type: ignore[attr-defined]

    def convert_condition_val_str(self, cond: Any, state: ConversionState) -> str:
        """A keyword (value without field) searches the message."""
        target = FieldTarget('"message"', False, "str")
        return self._string_predicate(target, _as_contains(cond.value), False)(target.sql)

    def convert_condition_val_num(self, cond: Any, state: ConversionState) -> str:
        target = FieldTarget('"message"', False, "str")
        return self._string_predicate(target, _as_contains(SigmaString(str(cond.value))), False)(target.sql)

    def convert_condition_val_re(self, cond: Any, state: ConversionState) -> str:
        return f'regexp_matches("message", {sql_string(str(cond.value.regexp))})'

    # ---- boolean structure -----------------------------------------------------------------------
    def decide_convert_condition_as_in_expression(
        self, cond: ConditionOR | ConditionAND, state: ConversionState
    ) -> bool:
        if not super().decide_convert_condition_as_in_expression(cond, state):
            return False
        # only plain (non-cased) strings or plain numbers; never a mix
        values = [arg.value for arg in cond.args]  # type: ignore[union-attr]
        return all(type(v) is SigmaString for v in values) or all(type(v) is SigmaNumber for v in values)

    def convert_condition_as_in_expression(
        self, cond: ConditionOR | ConditionAND, state: ConversionState
    ) -> str:
        args = [arg for arg in cond.args if isinstance(arg, ConditionFieldEqualsValueExpression)]
        target = field_target(args[0].field)
        values = [arg.value for arg in args]
        if isinstance(values[0], SigmaNumber):
            numbers = ", ".join(str(v.number) for v in values)  # type: ignore[attr-defined]
            if target.kind in ("int", "float"):
                return _any(target, lambda x: f"{x} IN ({numbers})")
            return _any(target, lambda x: f"TRY_CAST({x} AS DOUBLE) IN ({numbers})")
        texts = ["".join(p for p in v.s if isinstance(p, str)) for v in values]  # type: ignore[attr-defined]
        lower = not (target.lowercase and all(t == t.lower() for t in texts))
        literals = ", ".join(sql_string(t.lower()) for t in texts)

        def predicate(x: str) -> str:
            expr = x if target.kind in ("str", "json") else f"CAST({x} AS VARCHAR)"
            return f"{'lower(' + expr + ')' if lower else expr} IN ({literals})"

        return _any(target, predicate)

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState) -> Any:
        """ORs of values on one field become one predicate: one regex or one pass over a list.

        Sigma value lists (``field|contains: [20 miner names]``) otherwise compile to 20 separate
        ``lower(field)``/``json_extract`` calls (or 20 lambdas over a list) that DuckDB binds and runs
        one by one: the bind time alone dominated a batch's evaluation before this grouping.
        """
        args = cond.args
        if (
            len(args) >= 2
            and all(isinstance(a, ConditionFieldEqualsValueExpression) for a in args)
            and len({a.field for a in args}) == 1  # type: ignore[union-attr]
            and not self.decide_convert_condition_as_in_expression(cond, state)
        ):
            grouped = self._or_group(cast(list[ConditionFieldEqualsValueExpression], args))
            if grouped is not None:
                return grouped
        return super().convert_condition_or(cond, state)

    def _or_group(self, args: list[ConditionFieldEqualsValueExpression]) -> str | None:
        target = field_target(args[0].field)
        values = [a.value for a in args]
        if all(isinstance(v, SigmaCIDRExpression) for v in values):
            prefixes = _ipv4_prefixes([v.network for v in values])  # type: ignore[attr-defined]
            if prefixes is None:
                return None
            regex = sql_string("^(?:" + "|".join(prefixes) + ")")
            return _any(target, lambda x: f"regexp_matches({x}, {regex})")
        if all(type(v) is SigmaString for v in values):
            pieces = [_regex_piece(v) for v in values]  # type: ignore[arg-type]
            substring = any(p is not None and not p.startswith("^") and not p.endswith("$") for p in pieces)
            if all(p is not None for p in pieces) and (substring or len(pieces) > 8):
                # lower() + a lower-case pattern rather than (?i): RE2 keeps its literal prefilters, and
                # the engine computes lower(column) once per batch for all rules
                regex = sql_string("(?:" + "|".join(cast(list[str], pieces)) + ")")
                col = target.kind in ("str", "json")
                return _any(
                    target,
                    lambda x: f"regexp_matches(lower({x if col else f'CAST({x} AS VARCHAR)'}), {regex})",
                )
        if target.is_list:
            preds = [self._element_predicate(target, a) for a in args]
            return _any(target, lambda x: "(" + " OR ".join(p(x) for p in preds) + ")")
        return None

    def _element_predicate(
        self, target: FieldTarget, cond: ConditionFieldEqualsValueExpression
    ) -> Callable[[str], str]:
        """The predicate of one condition on one element (``x``) of a list target."""
        self._override = FieldTarget("x", False, target.kind, target.lowercase)
        try:
            expr = str(self.convert_condition_field_eq_val(cond, ConversionState()))
        finally:
            self._override = None
        return lambda _x: expr  # list targets always name the element x

    def convert_condition_and(self, cond: ConditionAND, state: ConversionState) -> Any:
        """AND with the cheap terms first: DuckDB evaluates a filter's AND left to right on the rows
        still selected, so verb/resource/user tests run before any JSON is parsed or regex run."""
        terms = self._and_terms(cond, state)
        if not terms:
            return None
        terms.sort(key=_cost)
        return " AND ".join(terms)

    def _and_terms(self, cond: ConditionAND, state: ConversionState) -> list[str]:
        """The terms of an AND with nested ANDs flattened (``selection and not filter`` is
        AND(AND(verb, resource, json), NOT ...)): sorting only the top level left a selection's cheap
        verb/resource tests behind the filter's four ``starts_with(lower(user))``; flattened, the
        equality tests run first (measured on the simulator mix: fewer rows reach the costly terms)."""
        terms: list[str] = []
        for arg in cond.args:
            if isinstance(arg, ConditionAND):
                terms += self._and_terms(arg, state)
                continue
            converted = (
                self.convert_condition(arg, state)
                if self.compare_precedence(cond, arg)
                else self.convert_condition_group(arg, state)
            )
            if converted is not None:
                terms.append(str(converted))
        return terms

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState) -> Any:
        inner = cond.args[0]
        if inner is None:
            return None
        expr = self.convert_condition(inner, state)
        if expr is None:
            return None
        return f"NOT coalesce(({expr}), false)"

    def finalize_query_default(self, rule: Any, query: str, index: int, state: ConversionState) -> str:
        return query


def _cost(sql: str) -> int:
    """A rough evaluation cost of a SQL predicate, to order AND terms (stable sort keeps ties)."""
    return (
        4 * sql.count("json_extract")
        + 3 * (sql.count("regexp_") + sql.count("list_filter") + sql.count("kt_"))
        + sql.count("lower(")
        + sql.count(" LIKE ")
    )


def _ipv4_prefixes(networks: list[IPv4Network | Any]) -> list[str] | None:
    """RE2 fragments matching the dotted-quad text of exactly the addresses of IPv4 networks.

    A network is widened to whole octets (172.16.0.0/12 -> 172.16. ... 172.31.), so the test is a
    prefix match on text; None for IPv6 or when that would take too many prefixes.
    """
    out: list[str] = []
    for net in networks:
        if not isinstance(net, IPv4Network):
            return None
        octets = -(-net.prefixlen // 8)  # round up to whole octets
        if octets == 0:
            out.append("")
            continue
        for sub in net.subnets(new_prefix=octets * 8):
            parts = str(sub.network_address).split(".")[:octets]
            out.append(".".join(parts) + ("." if octets < 4 else ""))
        if len(out) > 4096:
            return None
    return [re.escape(p) + ("" if p.endswith(".") or not p else "$") for p in out]


def _regex_piece(value: SigmaString) -> str | None:
    """A Sigma string as a RE2 fragment (for OR groups): contains/startswith/endswith/equals."""
    parts = list(value.s)
    if any(p is SpecialChars.WILDCARD_SINGLE or not isinstance(p, (str, SpecialChars)) for p in parts):
        return None
    inner = [p for p in parts if isinstance(p, str)]
    if len(inner) != 1 or not inner[0]:
        return None
    text = re.escape(inner[0].lower())
    lead = parts[0] is SpecialChars.WILDCARD_MULTI
    trail = parts[-1] is SpecialChars.WILDCARD_MULTI
    return ("" if lead else "^") + text + ("" if trail else "$")


def _as_contains(value: SigmaString) -> SigmaString:
    """Keywords match anywhere in the message, as Sigma's full-text semantics say."""
    if not value.startswith(SpecialChars.WILDCARD_MULTI):
        value = SigmaString("*") + value
    if not value.endswith(SpecialChars.WILDCARD_MULTI):
        value = value + SigmaString("*")
    return value
