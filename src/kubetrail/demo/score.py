"""Scoring a run against the simulator's ground truth: sequence ids and detections.

Two questions the demo (and ``tests/test_demo_detection.py``) answer from stored or parsed events:

* **Lost and duplicated events.** Every simulated line carries a sequence id (``kubetrail.simulate.seq``).
  One DuckDB query extracts the distinct ids of every event (message, payload attributes, audit
  annotations, joined stack traces) and counts them; ``check_seq`` compares with the manifest.
* **Detections.** An attack's evidence is the events whose audit id, sequence id or stream the ground
  truth (``truth.jsonl``) names. An alert detects an attack when one of its event ids is evidence of
  it; an alert holding any event that is *not* evidence of some attack fired on background noise.

Both work on any relation DuckDB can read (the store's ``logs`` view, an Arrow table), given a
``run_sql`` callable, so the in-memory test and the end-to-end demo share the same code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from kubetrail.simulate.seq import SEQ_PATTERN, SeqCheck, check_seq

__all__ = [
    "SEQ_ID_PATTERN",
    "AttackResult",
    "DetectionScore",
    "event_evidence",
    "evidence_keys",
    "score_alerts",
    "seq_check",
    "seq_counts",
]

RunSQL = Callable[[str], pa.Table]

# SEQ_PATTERN with one capture group holding "<stream>:<n>" (DuckDB's regexp_extract_all takes a group index).
SEQ_ID_PATTERN = SEQ_PATTERN.split("(?P<stream>")[0] + r"([A-Za-z0-9._-]+:[0-9]+)"
_TEXT = 'concat_ws(\' \', "message", "attributes", "kubernetes.audit.annotations", "error.stack_trace")'


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _seq_list_sql() -> str:
    return f"list_distinct(regexp_extract_all({_TEXT}, {_sql_str(SEQ_ID_PATTERN)}, 1))"


def seq_counts(run_sql: RunSQL, relation: str = "logs") -> dict[str, Counter[int]]:
    """How often each sequence id is held by an event: ``{stream: Counter({n: events})}``."""
    sql = f"SELECT s, count(*) AS n FROM (SELECT unnest({_seq_list_sql()}) AS s FROM {relation}) GROUP BY s"
    table = run_sql(sql)
    seen: dict[str, Counter[int]] = {}
    for sid, count in zip(table.column("s").to_pylist(), table.column("n").to_pylist(), strict=True):
        stream, _, n = str(sid).rpartition(":")
        seen.setdefault(stream, Counter())[int(n)] += int(count)
    return seen


def seq_check(
    seen: Mapping[str, Counter[int]],
    manifest: Mapping[str, Any],
    streams: Iterable[str] | None = None,
) -> SeqCheck:
    """``check_seq`` against the manifest's line counts (and rotation-deleted ranges), for ``streams``."""
    info = manifest["streams"]
    wanted = set(streams) if streams is not None else set(info)
    expected = {s: int(info[s]["lines"]) for s in wanted}
    deleted = {s: [tuple(r) for r in info[s].get("deleted", [])] for s in wanted}
    return check_seq(seen, expected, deleted)


def evidence_keys(truth: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """``audit:<id>`` / ``seq:<stream:n>`` / ``stream:<stream>`` -> the attack ids that key is evidence of."""
    keys: dict[str, set[str]] = {}
    for attack in truth:
        aid = str(attack["id"])
        for audit_id in attack.get("audit_ids", []):
            keys.setdefault(f"audit:{audit_id}", set()).add(aid)
        for sid in attack.get("seq_ids", []):
            keys.setdefault(f"seq:{sid}", set()).add(aid)
        for stream in attack.get("streams", []):
            keys.setdefault(f"stream:{stream}", set()).add(aid)
    return keys


def event_evidence(
    run_sql: RunSQL, event_ids: Iterable[str], truth: Sequence[Mapping[str, Any]], relation: str = "logs"
) -> dict[str, set[str]]:
    """For each given event id: the attacks it is evidence of (an empty set: background noise)."""
    ids = sorted(set(event_ids))
    out: dict[str, set[str]] = {}
    if not ids:
        return out
    keys = evidence_keys(truth)
    for start in range(0, len(ids), 5000):
        part = ", ".join(_sql_str(i) for i in ids[start : start + 5000])
        table = run_sql(
            f'SELECT "event.id" AS id, "kubernetes.audit.auditID" AS audit, {_seq_list_sql()} AS seq '
            f'FROM {relation} WHERE "event.id" IN ({part})'
        )
        for eid, audit, seq in zip(
            *(table.column(c).to_pylist() for c in ("id", "audit", "seq")), strict=True
        ):
            attacks = out.setdefault(eid, set())
            if audit:
                attacks |= keys.get(f"audit:{audit}", set())
            for sid in seq or ():
                attacks |= keys.get(f"seq:{sid}", set())
                attacks |= keys.get(f"stream:{sid.rpartition(':')[0]}", set())
    return out


@dataclass
class AttackResult:
    """One attack of the ground truth and the alerts whose events are its evidence."""

    id: str
    name: str
    rules: list[str] = field(default_factory=list)  # rule titles
    alerts: list[str] = field(default_factory=list)  # alert ids

    @property
    def detected(self) -> bool:
        return bool(self.alerts)


@dataclass
class DetectionScore:
    attacks: list[AttackResult]
    noise_alerts: list[dict[str, Any]]  # alerts with events that are no attack's evidence
    alerts_total: int
    unknown_events: int = 0  # alert event ids not found among the events (should be 0)

    @property
    def detected(self) -> int:
        return sum(a.detected for a in self.attacks)

    @property
    def missed(self) -> list[AttackResult]:
        return [a for a in self.attacks if not a.detected]


def score_alerts(
    alerts: Sequence[Any], evidence: Mapping[str, set[str]], truth: Sequence[Mapping[str, Any]]
) -> DetectionScore:
    """Attribute every alert (``kubetrail.detect.alerts.Alert``) to attacks or to background noise."""
    results = {str(a["id"]): AttackResult(str(a["id"]), str(a["name"])) for a in truth}
    noise: list[dict[str, Any]] = []
    unknown = 0
    for alert in alerts:
        hit: set[str] = set()
        noise_events = 0
        for eid in alert.event_ids:
            if eid not in evidence:
                unknown += 1
                continue
            attacks = evidence[eid]
            hit |= attacks
            noise_events += not attacks
        for aid in sorted(hit):
            result = results[aid]
            result.alerts.append(alert.id)
            if alert.rule_title not in result.rules:
                result.rules.append(alert.rule_title)
        if noise_events:
            noise.append(
                {
                    "alert": alert.id,
                    "rule_id": alert.rule_id,
                    "rule": alert.rule_title,
                    "level": alert.level,
                    "noise_events": noise_events,
                    "group_key": alert.group_key,
                }
            )
    return DetectionScore(list(results.values()), noise, len(alerts), unknown)
