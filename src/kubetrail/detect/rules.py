"""Loading Sigma rule files and compiling them, one rule at a time, so one bad rule never stops the rest.

A :class:`RuleSet` holds the compiled detection rules (SQL boolean expressions over the schema, with
the log-source condition folded in), the correlation rules that reference them, and a
:class:`RuleError` for every rule that could not be parsed, compiled or run — with its id, file and the
error — so the CLI and the server can show what is disabled and why.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from kubetrail.detect.backend import SQL_MACROS, DuckDBBackend, field_target
from kubetrail.detect.filters import FilterIssue, LoadedFilter, apply_filters, plan_filters
from kubetrail.detect.pipeline import DEFAULT_CLUSTER_NETWORKS, DEFAULT_TRUSTED_REGISTRIES, kubetrail_pipeline
from kubetrail.schema import SCHEMA

__all__ = [
    "CompiledCorrelation",
    "CompiledRule",
    "RuleError",
    "RuleSet",
    "load_rules",
    "logsource_sql",
    "rule_files",
]

LEVEL_SEVERITY: dict[str, int] = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

# (product, category, service) of a rule -> the events it reads. None = any value.
_LOGSOURCES: tuple[tuple[str | None, str | None, str | None, str | None], ...] = (
    ("kubernetes", None, "audit", "audit"),
    ("kubernetes", None, "container", "container"),
    ("kubernetes", "container", None, "container"),
    ("kubernetes", None, "node", "node"),
    ("kubernetes", "node", None, "node"),
    ("kubernetes", None, "kubelet", "node"),
    ("kubernetes", None, "controlplane", "controlplane"),
    ("linux", None, "syslog", "syslog"),
)


@dataclass(frozen=True)
class RuleError:
    """A rule that is disabled, and why."""

    rule_id: str
    title: str
    path: str
    stage: str  # "parse", "compile" or "run"
    error: str


@dataclass
class CompiledRule:
    """One detection rule compiled to a SQL boolean expression over a batch."""

    id: str
    name: str | None
    title: str
    level: str
    severity: int
    tags: list[str]
    path: str
    sql: str
    dataset: str | None
    alert: bool = True  # False when only a correlation uses it (``generate: false``)
    description: str = ""
    fields: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)  # "<title> (<file>)" of the Sigma filters compiled in


@dataclass
class CompiledCorrelation:
    """A Sigma correlation rule, evaluated over the matches of the rules it references."""

    id: str
    name: str | None
    title: str
    level: str
    severity: int
    tags: list[str]
    path: str
    type: str  # event_count, value_count, temporal, temporal_ordered
    rule_ids: list[str]
    group_by: list[str]
    group_sql: list[str]
    window_secs: float
    op: str  # gte, gt, lte, lt, eq, neq
    count: int
    value_field: str | None = None
    value_sql: str | None = None


@dataclass
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[CompiledCorrelation] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    filter_issues: list[FilterIssue] = field(default_factory=list)  # filters that do not apply; rules run

    def by_id(self) -> dict[str, CompiledRule]:
        return {r.id: r for r in self.rules}

    def disable(self, rule_id: str, stage: str, error: str) -> None:
        """Remove a rule (and correlations that need it), recording why."""
        keep: list[CompiledRule] = []
        for rule in self.rules:
            if rule.id == rule_id:
                self.errors.append(RuleError(rule.id, rule.title, rule.path, stage, error))
            else:
                keep.append(rule)
        self.rules = keep
        for corr in list(self.correlations):
            if rule_id in corr.rule_ids:
                self.correlations.remove(corr)
                msg = f"references disabled rule {rule_id}: {error}"
                self.errors.append(RuleError(corr.id, corr.title, corr.path, stage, msg))

    def merge(self, other: RuleSet) -> RuleSet:
        return RuleSet(
            self.rules + other.rules,
            self.correlations + other.correlations,
            self.errors + other.errors,
            self.filter_issues + other.filter_issues,
        )


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``.yml``/``.yaml`` file under the given files and directories, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix in (".yml", ".yaml") and f.is_file())
        else:
            out.append(p)
    return out


def logsource_sql(product: str | None, category: str | None, service: str | None) -> str | None:
    """The dataset a Sigma log source reads, or None when kubetrail has no such events."""
    for want_product, want_category, want_service, dataset in _LOGSOURCES:
        if want_product != product:
            continue
        if want_category is not None and want_category != category:
            continue
        if want_service is not None and want_service != service:
            continue
        return dataset
    return None


def _rule_id(rule: SigmaRule | SigmaCorrelationRule, path: str) -> str:
    return str(rule.id) if rule.id else (rule.name or path)


def _level(rule: SigmaRule | SigmaCorrelationRule) -> str:
    return rule.level.name.lower() if rule.level else "medium"


_OPS = {"GTE": "gte", "GT": "gt", "LTE": "lte", "LT": "lt", "EQ": "eq", "NEQ": "neq"}


_CHECK: dict[str, Any] = {}
_CHECK_LOCK = threading.Lock()


def _check_sql(sql: str) -> None:
    """Bind the expression against an empty batch: catches unknown functions and type errors early."""
    with _CHECK_LOCK:
        con = _CHECK.get("con")
        if con is None:
            con = duckdb.connect()
            for macro in SQL_MACROS:
                con.execute(macro)
            con.register("batch", SCHEMA.empty_table())
            _CHECK["con"] = con
        con.execute(f"SELECT count(*) FROM batch WHERE {sql}").fetchall()


def load_rules(
    paths: Sequence[str | Path],
    cluster_networks: Sequence[str] = DEFAULT_CLUSTER_NETWORKS,
    disabled: Iterable[str] = (),
    trusted_registries: Sequence[str] = DEFAULT_TRUSTED_REGISTRIES,
    filters: Sequence[str | Path] = (),
) -> RuleSet:
    """Parse, map and compile every rule under ``paths``; failures become :class:`RuleError`s.

    Sigma filter documents found under ``paths`` or ``filters`` (files or directories of filters only)
    are compiled into the rules they name; see :mod:`kubetrail.detect.filters`.
    """
    ruleset = RuleSet()
    skip = set(disabled)
    collections: list[SigmaCollection] = []
    loaded_filters: list[LoadedFilter] = []
    filter_files = set(rule_files(filters))
    for path in rule_files(paths) + sorted(filter_files):
        try:
            # filters are collected, not applied per file: they name rules of other files
            collection = SigmaCollection.from_yaml(
                path.read_text(), collect_errors=True, collect_filters=True
            )
        except Exception as exc:  # any unreadable file is reported, never fatal
            msg = f"{type(exc).__name__}: {exc}"
            ruleset.errors.append(RuleError(path.name, path.name, str(path), "parse", msg))
            continue
        for err in collection.errors:
            ruleset.errors.append(RuleError(path.name, path.name, str(path), "parse", str(err)))
        loaded_filters += [LoadedFilter(f, str(path)) for f in collection.filters if not f.errors]
        collection.filters = []
        if path in filter_files and collection.rules:
            msg = (
                "a filters path holds only filter documents; its rules are not loaded (put them under rules)"
            )
            ruleset.errors.append(RuleError(path.name, path.name, str(path), "parse", msg))
            continue
        for rule in collection.rules:
            rule.custom_attributes["kubetrail_path"] = str(path)
        collections.append(collection)
    merged = SigmaCollection.merge(collections) if collections else SigmaCollection([])
    try:
        merged.resolve_rule_references()
    except SigmaError as exc:
        ruleset.errors.append(RuleError("(references)", "(references)", "", "parse", str(exc)))
    plan = plan_filters(loaded_filters, merged.rules)
    ruleset.filter_issues += plan.issues
    backend = DuckDBBackend(kubetrail_pipeline(cluster_networks, trusted_registries))
    backend.init_processing_pipeline()
    no_alert: set[str] = set()
    for item in merged.rules:
        if isinstance(item, SigmaCorrelationRule) and not item.generate:
            no_alert |= {_rule_id(ref.rule, "") for ref in item.rules or [] if hasattr(ref, "rule")}
    for item in merged.rules:
        where = str(item.custom_attributes.get("kubetrail_path", ""))
        rid = _rule_id(item, where)
        if rid in skip or (item.name and item.name in skip):
            continue
        if item.errors:
            ruleset.errors.append(
                RuleError(rid, item.title, where, "parse", "; ".join(map(str, item.errors)))
            )
            continue
        try:
            if isinstance(item, SigmaCorrelationRule):
                ruleset.correlations.append(_compile_correlation(item, rid, where))
            else:
                pristine = copy.deepcopy(item) if id(item) in plan.by_rule else None
                compiled = _compile_rule(backend, item, rid, where, rid not in no_alert)
                if pristine is not None:
                    compiled = _compile_filtered(
                        backend, pristine, compiled, plan.by_rule[id(item)], ruleset.filter_issues
                    )
                ruleset.rules.append(compiled)
        except Exception as exc:  # any failure disables this rule only
            ruleset.errors.append(
                RuleError(rid, item.title, where, "compile", f"{type(exc).__name__}: {exc}")
            )
    known = {r.id for r in ruleset.rules}
    for corr in list(ruleset.correlations):
        missing = [r for r in corr.rule_ids if r not in known]
        if missing:
            ruleset.correlations.remove(corr)
            msg = f"references rules that are not loaded: {', '.join(missing)}"
            ruleset.errors.append(RuleError(corr.id, corr.title, corr.path, "compile", msg))
    return ruleset


def _compile_filtered(
    backend: DuckDBBackend,
    pristine: SigmaRule,
    unfiltered: CompiledRule,
    filters: Sequence[LoadedFilter],
    issues: list[FilterIssue],
) -> CompiledRule:
    """The rule with every filter that compiles against it; a filter that does not is reported and left
    out (the rule then alerts more, never less, than intended), the others still apply."""
    best, good = unfiltered, list[LoadedFilter]()
    for flt in filters:
        try:
            candidate = apply_filters(pristine, [*good, flt])
            compiled = _compile_rule(backend, candidate, unfiltered.id, unfiltered.path, unfiltered.alert)
        except Exception as exc:
            msg = f"filter {flt.title!r} ({flt.path}) does not compile against rule {unfiltered.id}: {exc}"
            issues.append(FilterIssue(flt.id, flt.title, flt.path, "compile", unfiltered.id, msg))
            continue
        good.append(flt)
        best = dataclasses.replace(compiled, filters=[f"{f.title} ({f.path})" for f in good])
    return best


def _compile_rule(backend: DuckDBBackend, rule: SigmaRule, rid: str, path: str, alert: bool) -> CompiledRule:
    ls = rule.logsource
    dataset = logsource_sql(ls.product, ls.category, ls.service)
    if dataset is None:
        raise ValueError(
            f"log source product={ls.product} category={ls.category} service={ls.service} is not collected"
        )
    output = rule._output
    rule._output = True  # compile rules that only feed a correlation too
    try:
        queries = backend.convert_rule(rule)
    finally:
        rule._output = output
    if not queries:
        raise ValueError("the rule compiled to no query")
    condition = " OR ".join(f"({q})" for q in queries)
    sql = f"\"event.dataset\" = '{dataset}' AND ({condition})"
    _check_sql(sql)
    return CompiledRule(
        **_rule_meta(rule, rid, path),
        sql=sql,
        dataset=dataset,
        alert=alert,
        description=rule.description or "",
        fields=list(rule.fields),
    )


def _rule_meta(rule: Any, rid: str, path: str) -> dict[str, Any]:
    """What detection and correlation rules share: identity, level and ATT&CK tags."""
    level = _level(rule)
    return {
        "id": rid,
        "name": rule.name,
        "title": rule.title,
        "level": level,
        "severity": LEVEL_SEVERITY.get(level, 3),
        "tags": [str(t) for t in rule.tags],
        "path": path,
    }


def _compile_correlation(rule: SigmaCorrelationRule, rid: str, path: str) -> CompiledCorrelation:
    kind = rule.type.name.lower()
    if kind not in ("event_count", "value_count", "temporal", "temporal_ordered"):
        raise ValueError(f"correlation type {kind} is not supported")
    refs = [_rule_id(ref.rule, "") for ref in rule.rules or [] if hasattr(ref, "rule")]
    group_by = list(rule.group_by or [])
    group_sql = [_scalar_sql(f) for f in group_by]
    condition: Any = rule.condition
    op = _OPS.get(condition.op.name, "gte")
    value_field = getattr(condition, "fieldref", None)
    if isinstance(value_field, list):
        value_field = value_field[0] if value_field else None
    return CompiledCorrelation(
        **_rule_meta(rule, rid, path),
        type=kind,
        rule_ids=refs,
        group_by=group_by,
        group_sql=group_sql,
        window_secs=float(rule.timespan.seconds),
        op=op,
        count=int(condition.count),
        value_field=value_field,
        value_sql=_scalar_sql(value_field) if value_field else None,
    )


def _scalar_sql(name: str) -> str:
    """A group-by or counted field as one scalar: the first element of a list field."""
    from kubetrail.detect.pipeline import FIELD_REPAIRS

    mapped = FIELD_REPAIRS.get(name, name)
    target = field_target(mapped if isinstance(mapped, str) else mapped[0])
    if target.is_list:
        return f"CAST(({target.sql})[1] AS VARCHAR)"
    return f"CAST({target.sql} AS VARCHAR)"


def replace_sql(rule: CompiledRule, sql: str) -> CompiledRule:
    return dataclasses.replace(rule, sql=sql)
