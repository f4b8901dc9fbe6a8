"""Evaluate every enabled rule over a batch in one DuckDB pass.

The batch (plus a ``__row`` position column) is registered once; one query returns ``(rule index,
row)`` pairs for every match of every rule. Two query shapes were measured (``benchmarks/detect.py``,
``docs/detect.md``):

* ``union``: ``SELECT i, __row FROM batch WHERE cond_i UNION ALL ...`` — each condition runs as a
  filter, so DuckDB short-circuits (selection vectors, adaptive reordering of ANDs): the JSON parsing
  of ``requestObject`` only happens on the few rows whose verb and resource already match.
* ``project``: ``SELECT __row, cond_1 AS r1, ... FROM batch`` — one scan, but every condition is
  computed on every row.

``union`` is the default (faster on the audit + container mix). If the combined query fails at run
time (a cast error only some data triggers), the engine finds the failing rules by bisection,
disables them with a ``run`` error record and evaluates the others, so one rule never stops the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from kubetrail.detect.backend import SQL_MACROS
from kubetrail.detect.rules import CompiledRule, RuleSet

__all__ = ["BatchMatches", "Engine", "RuleMatch"]

log = logging.getLogger(__name__)


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


class Engine:
    """All enabled detection rules of a :class:`RuleSet`, evaluated together over each batch."""

    def __init__(self, ruleset: RuleSet, mode: str = "union", threads: int | None = None) -> None:
        if mode not in ("union", "project"):
            raise ValueError(f"unknown evaluation mode {mode!r} (union or project)")
        self.ruleset = ruleset
        self.mode = mode
        self._con = new_connection(threads)
        self._lock = threading.Lock()
        self._sql: str | None = None

    @property
    def rules(self) -> list[CompiledRule]:
        return self.ruleset.rules

    def _query(self, rules: Sequence[CompiledRule], source: str = "batch") -> str:
        if self.mode == "project":
            cols = ", ".join(f"coalesce(({r.sql}), false) AS r{i}" for i, r in enumerate(rules))
            return f"SELECT __row, {cols} FROM {source}"
        return " UNION ALL ".join(
            f"SELECT {i}::INTEGER AS rule, __row FROM {source} WHERE {r.sql}" for i, r in enumerate(rules)
        )

    def _run(self, rules: Sequence[CompiledRule]) -> list[np.ndarray]:
        """Row positions per rule (same order as ``rules``); raises on any failing rule."""
        if not rules:
            return []
        result = self._con.sql(self._query(rules)).to_arrow_table()
        if self.mode == "project":
            out = []
            rows = result.column("__row").to_numpy()
            for i in range(len(rules)):
                mask = result.column(f"r{i}").to_numpy(zero_copy_only=False)
                out.append(np.sort(rows[mask.astype(bool)]))
            return out
        rule_idx = result.column("rule").to_numpy()
        rows = result.column("__row").to_numpy()
        order = np.lexsort((rows, rule_idx))
        rule_idx, rows = rule_idx[order], rows[order]
        bounds = np.searchsorted(rule_idx, np.arange(len(rules) + 1))
        return [rows[bounds[i] : bounds[i + 1]] for i in range(len(rules))]

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
            self._con.register("batch", table)
            try:
                rules = list(self.rules)
                try:
                    per_rule = self._run(rules)
                except duckdb.Error:
                    for rule, error in self._find_failing(rules):
                        log.error("rule %s (%s) disabled: %s", rule.id, rule.title, error)
                        self.ruleset.disable(rule.id, "run", error)
                    rules = list(self.rules)
                    per_rule = self._run(rules)
            finally:
                self._con.unregister("batch")
        return BatchMatches(
            [RuleMatch(r, rows) for r, rows in zip(rules, per_rule, strict=True) if len(rows)]
        )

    def close(self) -> None:
        self._con.close()
