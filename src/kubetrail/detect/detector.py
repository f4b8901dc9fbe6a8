"""The streaming detector: enrich a batch (GeoIP, threat intel), run every rule, correlate, alert.

One :class:`Detector` per pipeline. ``process(batch)`` returns the enriched batch and the alerts it
raised (new or merged). All per-event work is vectorized: rule conditions in one DuckDB pass
(:mod:`kubetrail.detect.engine`), alert grouping as one GROUP BY over the matched rows, intel as
``pc.is_in`` / sorted-range lookups. Python only touches the matches (few) for correlation state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from kubetrail.detect.alerts import MAX_EVENT_IDS, Alert, AlertStore, LogSink, WebhookSink
from kubetrail.detect.config import DetectConfig
from kubetrail.detect.correlations import CorrelationAlert, CorrelationState, Hit
from kubetrail.detect.engine import BatchMatches, Engine, new_connection
from kubetrail.detect.rules import RuleSet, load_rules

__all__ = ["Detector", "correlation_alert", "detection_alert_rows", "hits_for", "ns_to_iso"]

log = logging.getLogger(__name__)


def ns_to_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_TS = 'coalesce(epoch_ns(b."@timestamp"), epoch_ns(b."event.ingested"), 0)'


def hits_for(
    con: Any, table: pa.Table, matches: BatchMatches, states: Sequence[CorrelationState]
) -> dict[str, list[Hit]]:
    """Extract, per correlation, the hits of its referenced rules from one batch's matches."""
    by_rule = matches.by_rule()
    out: dict[str, list[Hit]] = {}
    for state in states:
        corr = state.correlation
        parts = [(rid, by_rule[rid].rows) for rid in corr.rule_ids if rid in by_rule]
        if not parts:
            continue
        rules = pa.array([rid for rid, rows in parts for _ in range(len(rows))], pa.string())
        rows = pa.array(np.concatenate([rows for _, rows in parts]), pa.int64())
        con.register("m", pa.table({"rule": rules, "row": rows}))
        con.register("b", table)
        keys = ", ".join(f"{sql} AS k{i}" for i, sql in enumerate(corr.group_sql))
        value = corr.value_sql or "NULL"
        sql = (
            f'SELECT m.rule, {_TS} AS ts, b."event.id" AS id, {value} AS v'
            + (f", {keys}" if keys else "")
            + " FROM m JOIN b ON m.row = b.__row"
        )
        res = con.sql(sql).fetchall()
        con.unregister("m")
        con.unregister("b")
        n = len(corr.group_sql)
        out[corr.id] = [Hit(int(r[1]), r[0], r[2] or "", tuple(r[4 : 4 + n]), r[3]) for r in res]
    return out


def detection_alert_rows(
    con: Any, batch: pa.RecordBatch | pa.Table, matches: BatchMatches, fields: list[str]
) -> list[Alert]:
    """Group the alerting matches of a batch per (rule, values of ``fields``) with one DuckDB query."""
    alerting = [m for m in matches.matches if m.rule.alert]
    if not alerting:
        return []
    rules = {m.rule.id: m.rule for m in alerting}
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    table = table.append_column("__row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    m = pa.table(
        {
            "rule": pa.array([x.rule.id for x in alerting for _ in range(len(x.rows))], pa.string()),
            "row": pa.array(np.concatenate([x.rows for x in alerting]), pa.int64()),
        }
    )
    fields = [f for f in fields if f in table.column_names]
    cols = "".join(f", b.{_quote(f)} AS g{i}" for i, f in enumerate(fields))
    sql = (
        f"SELECT m.rule{cols}, min({_TS}) AS first, max({_TS}) AS last, count(*) AS n, "
        f'list(b."event.id") AS ids FROM m JOIN b ON m.row = b.__row GROUP BY ALL'
    )
    con.register("m", m)
    con.register("b", table)
    try:
        res = con.sql(sql).fetchall()
    finally:
        con.unregister("m")
        con.unregister("b")
    out = []
    nf = len(fields)
    for r in res:
        rule = rules[r[0]]
        key = {f: v for f, v in zip(fields, r[1 : 1 + nf], strict=True) if v is not None}
        first, last, n, ids = r[1 + nf :]
        out.append(
            Alert(
                rule.id,
                rule.title,
                rule.level,
                rule.severity,
                key,
                [i for i in ids if i][:MAX_EVENT_IDS],
                ns_to_iso(first),
                ns_to_iso(last),
                n,
                rule.tags,
                "detection",
            )
        )
    return out


class Detector:
    """Rules, correlation state, enrichment and alert delivery for one stream of batches."""

    def __init__(
        self,
        config: DetectConfig | None = None,
        ruleset: RuleSet | None = None,
        store: AlertStore | None = None,
    ) -> None:
        self.config = config or DetectConfig()
        cfg = self.config
        self.ruleset = ruleset or load_rules(
            cfg.rules,
            cluster_networks=cfg.cluster_networks,
            disabled=cfg.disabled_rules,
            trusted_registries=cfg.trusted_registries,
            filters=cfg.filters,
        )
        for err in self.ruleset.errors:
            log.error("rule %s (%s) disabled at %s: %s", err.rule_id, err.path, err.stage, err.error)
        for issue in self.ruleset.filter_issues:
            log.warning("Sigma filter %s not applied (%s): %s", issue.filter_id, issue.kind, issue.error)
        self.engine = Engine(self.ruleset, mode=cfg.mode, threads=cfg.threads)
        self.states = [
            CorrelationState(c, max_keys=cfg.correlation_max_keys) for c in self.ruleset.correlations
        ]
        self.store = store or AlertStore(cfg.alerts_db or ":memory:", suppress_secs=cfg.suppress_secs)
        self.sinks: list[Any] = [LogSink()]
        if cfg.webhook_url:
            self.sinks.append(WebhookSink(cfg.webhook_url, retries=cfg.webhook_retries))
        self._con = new_connection(1)
        self._lock = threading.Lock()
        self.enrichers: list[Any] = []
        if cfg.geoip.enabled:
            from kubetrail.detect.geoip import GeoIP

            self.enrichers.append(GeoIP(cfg.geoip))
        self.intel = None
        if cfg.intel.feeds:
            from kubetrail.detect.intel import IntelMatcher

            self.intel = IntelMatcher(cfg.intel)

    def process(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[Alert]]:
        for enricher in self.enrichers:
            batch = enricher.enrich(batch)
        alerts: list[Alert] = []
        if self.intel is not None:
            batch, intel_alerts = self.intel.match(batch)
            alerts += intel_alerts
        matches = self.engine.evaluate(batch)
        alerts += self.detection_alerts(batch, matches)
        alerts += self.correlate(batch, matches)
        return batch, self.record(alerts)

    def record(self, alerts: list[Alert]) -> list[Alert]:
        out: list[Alert] = []
        new: list[Alert] = []
        for alert in alerts:
            stored, is_new = self.store.record(alert)
            out.append(stored)
            if is_new:
                new.append(stored)
        for sink in self.sinks:
            try:
                sink.deliver(new)
            except Exception as exc:  # a sink must never stop detection
                log.error("alert sink %s failed: %s", type(sink).__name__, exc)
        return out

    def _table(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        return table.append_column("__row", pa.array(np.arange(table.num_rows, dtype=np.int64)))

    def detection_alerts(self, batch: pa.RecordBatch | pa.Table, matches: BatchMatches) -> list[Alert]:
        """One alert per (rule, group key) in the batch, with the matching event ids (one GROUP BY)."""
        with self._lock:
            return detection_alert_rows(self._con, batch, matches, list(self.config.group_by))

    def correlate(self, batch: pa.RecordBatch | pa.Table, matches: BatchMatches) -> list[Alert]:
        if not self.states or not matches.matches:
            return []
        with self._lock:
            hits = hits_for(self._con, self._table(batch), matches, self.states)
        out: list[Alert] = []
        for state in self.states:
            for c in state.update(hits.get(state.correlation.id, [])):
                out.append(correlation_alert(c))
        return out

    def close(self) -> None:
        self.engine.close()
        self._con.close()


def correlation_alert(c: CorrelationAlert) -> Alert:
    corr = c.correlation
    return Alert(
        corr.id,
        corr.title,
        corr.level,
        corr.severity,
        c.key,
        c.event_ids,
        ns_to_iso(c.first_ns),
        ns_to_iso(c.last_ns),
        c.count,
        corr.tags,
        "correlation",
        details={"type": corr.type},
    )
