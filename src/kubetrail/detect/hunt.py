"""Retro-hunts: the same compiled rules over history — any DuckDB relation (the store's ``logs`` view,
Parquet files) instead of one batch.

Each rule runs as one filtered aggregate query over the relation (DuckDB reads only the columns the
rule needs from Parquet), so progress is reported rule by rule. Detection matches are grouped into
alerts exactly as in streaming (rule + group key); correlation rules get the hits of their referenced
rules, sorted by time, through the same :class:`~kubetrail.detect.correlations.CorrelationState`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from kubetrail.detect.alerts import Alert
from kubetrail.detect.backend import SQL_MACROS
from kubetrail.detect.config import DEFAULT_GROUP_BY
from kubetrail.detect.correlations import CorrelationState, Hit
from kubetrail.detect.detector import correlation_alert, ns_to_iso
from kubetrail.detect.rules import CompiledRule, RuleSet

__all__ = ["HuntResult", "hunt"]

Progress = Callable[[int, int, str], None]
_TS = 'coalesce(epoch_ns("@timestamp"), epoch_ns("event.ingested"), 0)'


@dataclass
class HuntResult:
    alerts: list[Alert] = field(default_factory=list)
    matched_events: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (rule id, error)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def hunt(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    ruleset: RuleSet,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    progress: Progress | None = None,
    max_ids_per_alert: int = 1000,
) -> HuntResult:
    """Run every rule of ``ruleset`` over ``relation`` (a table/view name or a parenthesised query)."""
    for macro in SQL_MACROS:
        con.execute(macro)
    result = HuntResult()
    needed = {rid for c in ruleset.correlations for rid in c.rule_ids}
    total = len(ruleset.rules) + len(ruleset.correlations)
    keys = ", ".join(f"{_q(f)} AS g{i}" for i, f in enumerate(group_by))
    for done, rule in enumerate(ruleset.rules):
        if progress:
            progress(done, total, rule.title)
        if not rule.alert and rule.id not in needed:
            continue
        try:
            if rule.alert:
                result.alerts += _detection(
                    con, relation, rule, list(group_by), keys, max_ids_per_alert, result
                )
        except duckdb.Error as exc:
            result.errors.append((rule.id, f"{type(exc).__name__}: {exc}"))
    rules = ruleset.by_id()
    for i, corr in enumerate(ruleset.correlations):
        if progress:
            progress(len(ruleset.rules) + i, total, corr.title)
        state = CorrelationState(corr)
        hits: list[Hit] = []
        try:
            for rid in corr.rule_ids:
                rule = rules[rid]
                cols = ", ".join(f"{sql} AS k{j}" for j, sql in enumerate(corr.group_sql))
                sql = (
                    f'SELECT {_TS} AS ts, "event.id" AS id, {corr.value_sql or "NULL"} AS v'
                    + (f", {cols}" if cols else "")
                    + f" FROM {relation} WHERE {rule.sql}"
                )
                n = len(corr.group_sql)
                hits += [
                    Hit(int(r[0]), rid, r[1] or "", tuple(r[3 : 3 + n]), r[2])
                    for r in con.sql(sql).fetchall()
                ]
        except duckdb.Error as exc:
            result.errors.append((corr.id, f"{type(exc).__name__}: {exc}"))
            continue
        result.alerts += [correlation_alert(c) for c in state.update(hits)]
    if progress:
        progress(total, total, "done")
    return result


def _detection(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    rule: CompiledRule,
    fields: list[str],
    keys: str,
    max_ids: int,
    result: HuntResult,
) -> list[Alert]:
    sql = (
        f"SELECT {keys}, min({_TS}), max({_TS}), count(*), "
        f'list("event.id" ORDER BY "@timestamp")[1:{max_ids}] FROM {relation} WHERE {rule.sql} GROUP BY ALL'
    )
    out = []
    n = len(fields)
    for row in con.sql(sql).fetchall():
        key: dict[str, Any] = {f: v for f, v in zip(fields, row[:n], strict=True) if v is not None}
        first, last, count, ids = row[n:]
        result.matched_events += count
        out.append(
            Alert(
                rule.id,
                rule.title,
                rule.level,
                rule.severity,
                key,
                [i for i in ids if i],
                ns_to_iso(first),
                ns_to_iso(last),
                count,
                rule.tags,
                "detection",
                details={"hunt": True},
            )
        )
    return out
