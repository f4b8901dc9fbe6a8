"""Evaluate every enabled rule over a batch in one DuckDB pass.

Measured facts that shape this module (``docs/detect.md``, ``benchmarks/detect.py``):

* **Planning dominates small batches.** Binding and optimizing ~80 rule expressions costs far more
  than running them on a few thousand rows. So the query is planned ONCE (``PREPARE``) against a
  staging table whose schema never changes; each batch is copied into that table (only the columns
  the rules read) and the prepared statement is executed. Registering the Arrow batch directly would
  force a re-bind on every batch.
* **Shared work is done once per batch:** every ``lower("column")`` the rules use is computed once
  into the staging table (``"__lower.column"``) instead of once per rule — the container-log rules
  all read ``lower("message")``.
* **Query shape.** ``union`` (default): ``SELECT i, __row FROM stage WHERE cond_i UNION ALL ...`` —
  each condition runs as a filter, so DuckDB short-circuits ANDs (selection vectors, adaptive
  reordering): ``requestObject`` JSON is parsed only for rows whose verb and resource already match.
  ``project``: ``SELECT __row, cond_1, ...`` computes every condition on every row; measured slower.

A rule that fails at run time (a cast only some data triggers) is found by bisection, disabled with a
``run`` error record naming its id, and the batch is evaluated again without it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.detect.backend import SQL_MACROS
from kubetrail.detect.rules import CompiledRule, RuleSet
from kubetrail.schema import SCHEMA

__all__ = ["BatchMatches", "Engine", "RuleMatch", "Stage", "duck_type", "new_connection", "stage_sql"]

log = logging.getLogger(__name__)
_LOWER = re.compile(r'lower\("([^"]+)"\)')
_LOWER_REGEX = re.compile(r"regexp_matches\(\"__lower\.([^\"]+)\", '((?:[^']|'')*)'\)")
_LOWER_CONTAINS = re.compile(r"contains\(\"__lower\.([^\"]+)\", '((?:[^']|'')*)'\)")


@dataclass
class RuleMatch:
    """The rows of one batch a rule matched."""

    rule: CompiledRule
    rows: np.ndarray  # int64 positions in the batch, ascending


@dataclass
class BatchMatches:
    matches: list[RuleMatch] = field(default_factory=list)

    def by_rule(self) -> dict[str, RuleMatch]:
        return {m.rule.id: m for m in self.matches}

    @property
    def total(self) -> int:
        return sum(len(m.rows) for m in self.matches)


def new_connection(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the macros compiled rules need."""
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for macro in SQL_MACROS:
        con.execute(macro)
    return con


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Stage:
    """What the staging table holds and how rule SQL reads it."""

    columns: list[str]  # schema columns copied as they are
    lowered: list[str]  # columns also copied as lower(column) -> "__lower.<column>"
    prefilters: dict[str, str]  # column -> one regex over the union of the rules' regexes on it
    sql: dict[str, str]  # rule id -> SQL over the staging table
    lowered_if_any: list[str] = field(default_factory=list)  # lowered only where "__any.<column>"


def stage_sql(rules: Sequence[CompiledRule]) -> Stage:
    """Plan the staging table: shared lower() columns and shared regex prefilters.

    Several rules test the same lowered column with regexes (the container-log rules all scan
    ``message``). One regex that is the union of them runs once per row into ``"__any.<column>"``;
    each rule's own regex then only runs on the rows that passed it (the AND short-circuits).
    """
    text = "\n".join(r.sql for r in rules)
    columns = [c for c in SCHEMA.names if _quote(c) in text]
    lowered = sorted({c for c in _LOWER.findall(text) if c in SCHEMA.names})

    def lower_cols(sql: str) -> str:
        return _LOWER.sub(
            lambda m: _quote("__lower." + m.group(1)) if m.group(1) in lowered else m.group(0), sql
        )

    rewritten = {r.id: lower_cols(r.sql) for r in rules}
    patterns: dict[str, list[str]] = {}
    for sql in rewritten.values():
        found = _LOWER_REGEX.findall(sql)
        # a substring test on the same lowered column joins the union as an escaped literal
        found += [(c, _sql_regex_literal(lit)) for c, lit in _LOWER_CONTAINS.findall(sql)]
        for column, pattern in found:
            if pattern not in patterns.setdefault(column, []):
                patterns[column].append(pattern)
    prefilters = {c: "|".join(f"(?:{p})" for p in ps) for c, ps in patterns.items() if len(ps) >= 2}

    def guard(m: re.Match[str]) -> str:
        if m.group(1) not in prefilters:
            return m.group(0)
        return f"({_quote('__any.' + m.group(1))} AND {m.group(0)})"

    guarded = {
        rid: _LOWER_CONTAINS.sub(guard, _LOWER_REGEX.sub(guard, body)) for rid, body in rewritten.items()
    }
    # A lowered column every rule reads only behind its prefilter is staged only on the rows that
    # passed it (NULL elsewhere): copying lower(message) of every container line was ~40% of staging.
    only_guarded = []
    for column in prefilters:
        guard_sql = f"({_quote('__any.' + column)} AND "
        rest = "\n".join(guarded.values())
        for pattern in (_LOWER_REGEX, _LOWER_CONTAINS):
            rest = pattern.sub(_drop_if(column), rest)
        if _quote("__lower." + column) not in rest.replace(guard_sql, ""):
            only_guarded.append(column)
    return Stage(columns, lowered, prefilters, guarded, only_guarded)


def _drop_if(column: str) -> Callable[[re.Match[str]], str]:
    """A substitution that removes the matched call when it reads ``"__lower.<column>"``."""
    return lambda m: "" if m.group(1) == column else m.group(0)


def _sql_regex_literal(sql_literal: str) -> str:
    """A SQL string literal's text (quotes doubled) as an RE2 pattern matching it literally."""
    return re.escape(sql_literal.replace("''", "'")).replace("'", "''")


class Engine:
    """All enabled detection rules of a :class:`RuleSet`, evaluated together over each batch."""

    def __init__(self, ruleset: RuleSet, mode: str = "union", threads: int | None = None) -> None:
        if mode not in ("union", "project"):
            raise ValueError(f"unknown evaluation mode {mode!r} (union or project)")
        self.ruleset = ruleset
        self.mode = mode
        self._con = new_connection(threads)
        self._lock = threading.Lock()
        self._prepared: list[CompiledRule] | None = None
        self._stages: dict[str, Stage] = {}  # dataset -> its staging table

    @property
    def rules(self) -> list[CompiledRule]:
        return self.ruleset.rules

    @staticmethod
    def _table_name(dataset: str) -> str:
        return "stage_" + re.sub(r"[^a-z0-9_]", "_", dataset.lower())

    def _sql_of(self, rule: CompiledRule) -> str:
        stage = self._stages.get(rule.dataset or "")
        return stage.sql.get(rule.id, rule.sql) if stage else rule.sql

    def _query(self, rules: Sequence[CompiledRule]) -> str:
        """One query over the per-dataset staging tables: each rule reads only its dataset's rows."""
        if self.mode == "project":
            parts = []
            for dataset in sorted(self._stages):
                cols = ", ".join(
                    f"coalesce(({self._sql_of(r)}), false) AS r{i}"
                    if r.dataset == dataset
                    else f"false AS r{i}"
                    for i, r in enumerate(rules)
                )
                parts.append(f"SELECT __row, {cols} FROM {self._table_name(dataset)}")
            return " UNION ALL ".join(parts)
        return " UNION ALL ".join(
            f"SELECT {i}::INTEGER AS rule, __row FROM {self._table_name(r.dataset or '')} "
            f"WHERE {self._sql_of(r)}"
            for i, r in enumerate(rules)
        )

    def _prepare(self) -> None:
        """(Re)build one staging table per dataset the rules read, and plan the combined query once.

        Staging by dataset means an audit rule never scans container rows (and the reverse), and each
        table holds only the columns its dataset's rules read.
        """
        rules = list(self.rules)
        datasets = sorted({r.dataset or "" for r in rules})
        self._stages = {d: stage_sql([r for r in rules if (r.dataset or "") == d]) for d in datasets}
        for dataset, stage in self._stages.items():
            defs = [f"{_quote(c)} {duck_type(c)}" for c in stage.columns]
            defs += [f"{_quote('__lower.' + c)} VARCHAR" for c in stage.lowered]
            defs += [f"{_quote('__any.' + c)} BOOLEAN" for c in stage.prefilters]
            defs.append("__row BIGINT")
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {self._table_name(dataset)} ({', '.join(defs)})")
        if self._prepared:
            self._con.execute("DEALLOCATE PREPARE detect")
        self._prepared = rules
        if rules:
            self._con.execute(f"PREPARE detect AS {self._query(rules)}")

    def _load(self, table: pa.Table) -> None:
        """Copy a batch into the staging tables, with the shared lower() columns and prefilters.

        Those are computed with Arrow kernels (utf8_lower, RE2 match): measured 2-4x faster than the
        same functions inside DuckDB on container messages.
        """
        datasets = table.column("event.dataset") if "event.dataset" in table.column_names else None
        for dataset, stage in self._stages.items():
            needed = table.select([*stage.columns, "__row"])  # filter only the columns this stage reads
            if datasets is None:
                part = needed.slice(0, 0)
            else:
                part = needed.filter(pc.fill_null(pc.equal(datasets, dataset), False))
            arrays = [part.column(c) for c in stage.columns]
            lowered = {c: pc.utf8_lower(part.column(c)) for c in stage.lowered}
            passed = {}
            for column, pattern in stage.prefilters.items():
                text = lowered.get(column)
                if text is None:
                    text = pc.utf8_lower(part.column(column))
                hit = pc.match_substring_regex(text, pattern.replace("''", "'"))
                passed[column] = pc.fill_null(hit, False)
            for column in stage.lowered_if_any:  # NULL strings cost nothing to copy
                lowered[column] = pc.if_else(passed[column], lowered[column], None)
            arrays += [lowered[c] for c in stage.lowered]
            arrays += [passed[c] for c in stage.prefilters]
            arrays.append(part.column("__row"))
            name = self._table_name(dataset)
            self._con.execute(f"DELETE FROM {name}")
            if part.num_rows == 0:
                continue
            self._con.register("__batch", pa.table(arrays, names=[f"c{i}" for i in range(len(arrays))]))
            try:
                self._con.execute(f"INSERT INTO {name} SELECT * FROM __batch")
            finally:
                self._con.unregister("__batch")

    def _split(self, result: pa.Table, count: int) -> list[np.ndarray]:
        if self.mode == "project":
            rows = result.column("__row").to_numpy()
            return [
                np.sort(rows[result.column(f"r{i}").to_numpy(zero_copy_only=False).astype(bool)])
                for i in range(count)
            ]
        rule_idx = result.column("rule").to_numpy()
        rows = result.column("__row").to_numpy()
        order = np.lexsort((rows, rule_idx))
        rule_idx, rows = rule_idx[order], rows[order]
        bounds = np.searchsorted(rule_idx, np.arange(count + 1))
        return [rows[bounds[i] : bounds[i + 1]] for i in range(count)]

    def _run(self, rules: Sequence[CompiledRule], prepared: bool = False) -> list[np.ndarray]:
        """Row positions per rule (same order as ``rules``); raises on any failing rule."""
        if not rules:
            return []
        if prepared:
            result = self._con.sql("EXECUTE detect").to_arrow_table()
        else:
            result = self._con.sql(self._query(rules)).to_arrow_table()
        return self._split(result, len(rules))

    def _find_failing(self, rules: Sequence[CompiledRule]) -> list[tuple[CompiledRule, str]]:
        """Bisect a failing set of rules down to the ones that fail on their own."""
        try:
            self._run(rules)
            return []
        except duckdb.Error as exc:
            if len(rules) == 1:
                return [(rules[0], f"{type(exc).__name__}: {exc}")]
        mid = len(rules) // 2
        return self._find_failing(rules[:mid]) + self._find_failing(rules[mid:])

    def evaluate(self, batch: pa.RecordBatch | pa.Table) -> BatchMatches:
        """Every enabled rule over ``batch``; rules that fail to run are disabled with a record."""
        n = batch.num_rows
        if n == 0 or not self.rules:
            return BatchMatches()
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        table = table.append_column("__row", pa.array(np.arange(n, dtype=np.int64)))
        with self._lock:
            if self._prepared != self.rules:
                self._prepare()
            self._load(table)
            rules = list(self.rules)
            try:
                per_rule = self._run(rules, prepared=True)
            except duckdb.Error:
                for rule, error in self._find_failing(rules):
                    log.error("rule %s (%s) disabled: %s", rule.id, rule.title, error)
                    self.ruleset.disable(rule.id, "run", error)
                self._prepare()
                self._load(table)
                rules = list(self.rules)
                per_rule = self._run(rules, prepared=True)
        return BatchMatches(
            [RuleMatch(r, rows) for r, rows in zip(rules, per_rule, strict=True) if len(rows)]
        )

    def close(self) -> None:
        self._con.close()


def duck_type(column: str) -> str:
    """The DuckDB type of a schema column (as the staging tables declare it)."""
    typ = SCHEMA.field(column).type
    if pa.types.is_list(typ):
        return "VARCHAR[]"
    if pa.types.is_timestamp(typ):
        return "TIMESTAMPTZ"
    return {
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
    }.get(typ, "VARCHAR")
