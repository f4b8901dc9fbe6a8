"""Rule test events (``kubetrail rules test``): native audit Events and container log lines -> rows.

A rule's test file (``tests/detect/rules/<rule-name>.yml``) lists events that must fire the rule
(``match``) and events that must not (``no_match``); for correlation rules each item is a sequence of
events. An event is a native ``audit.k8s.io/v1`` Event, ``{"container_log": {"message": ...,
"image": ...}}`` or ``{"columns": {<schema column>: value}}``.

``audit_row`` fills the columns the audit parser fills (``kubernetes.audit.*``, ``source.ip``,
``user.name``, ``event.action``, ...) for the native shape; it keeps rule tests independent of the
parser's other work (AKS/GKE envelopes, event ids from the origin).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import yaml

from kubetrail.detect.rules import RuleSet
from kubetrail.schema import from_pylist

__all__ = ["T0", "RuleTestResult", "audit_row", "batch_of", "container_row", "row_for", "run_rule_test"]

_ids = itertools.count()
T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def _ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return T0


def audit_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """One native audit Event as a schema row."""
    user = event.get("user") or {}
    ref = event.get("objectRef") or {}
    status = event.get("responseStatus") or {}
    ips = event.get("sourceIPs") or []
    ts = _ts(event.get("requestReceivedTimestamp") or event.get("stageReceivedTimestamp"))
    code = status.get("code")

    def js(key: str) -> str | None:
        value = event.get(key)
        return None if value is None else orjson.dumps(value).decode()

    return {
        "@timestamp": ts,
        "event.id": event.get("auditID") or f"test-{next(_ids)}",
        "event.dataset": "audit",
        "event.module": "audit",
        "event.action": event.get("verb"),
        "event.outcome": None if code is None else ("success" if int(code) < 400 else "failure"),
        "message": f"{event.get('verb')} {ref.get('resource')} by {user.get('username')}",
        "kubernetes.namespace": ref.get("namespace"),
        "source.ip": ips[0] if ips else None,
        "user.name": user.get("username"),
        "user_agent.original": event.get("userAgent"),
        "kubernetes.audit.auditID": event.get("auditID"),
        "kubernetes.audit.level": event.get("level"),
        "kubernetes.audit.stage": event.get("stage"),
        "kubernetes.audit.verb": event.get("verb"),
        "kubernetes.audit.requestURI": event.get("requestURI"),
        "kubernetes.audit.user.username": user.get("username"),
        "kubernetes.audit.user.uid": user.get("uid"),
        "kubernetes.audit.user.groups": user.get("groups"),
        "kubernetes.audit.impersonatedUser.username": (event.get("impersonatedUser") or {}).get("username"),
        "kubernetes.audit.sourceIPs": ips or None,
        "kubernetes.audit.userAgent": event.get("userAgent"),
        "kubernetes.audit.objectRef.resource": ref.get("resource"),
        "kubernetes.audit.objectRef.subresource": ref.get("subresource"),
        "kubernetes.audit.objectRef.namespace": ref.get("namespace"),
        "kubernetes.audit.objectRef.name": ref.get("name"),
        "kubernetes.audit.objectRef.apiGroup": ref.get("apiGroup"),
        "kubernetes.audit.objectRef.apiVersion": ref.get("apiVersion"),
        "kubernetes.audit.responseStatus.code": code,
        "kubernetes.audit.responseStatus.reason": status.get("reason"),
        "kubernetes.audit.annotations": js("annotations"),
        "kubernetes.audit.requestObject": js("requestObject"),
        "kubernetes.audit.responseObject": js("responseObject"),
        "kubernetes.audit.requestReceivedTimestamp": ts,
    }


def container_row(
    message: str,
    image: str = "registry.example.com/shop/web:1.4.2",
    namespace: str = "shop",
    pod: str = "web-7d9f8-abcde",
    container: str = "web",
    ts: datetime | None = None,
) -> dict[str, Any]:
    """One container log line as a schema row."""
    return {
        "@timestamp": ts or T0,
        "event.id": f"ctr-{next(_ids)}",
        "event.dataset": "container",
        "event.module": "cri",
        "message": message,
        "stream": "stdout",
        "kubernetes.namespace": namespace,
        "kubernetes.pod.name": pod,
        "kubernetes.container.name": container,
        "container.image.name": image,
        "host.name": "node-1",
    }


def row_for(event: Mapping[str, Any]) -> dict[str, Any]:
    """A test event in either form: a native audit Event, or ``{"container": {...}}`` / schema columns."""
    if "container_log" in event:
        spec = dict(event["container_log"])
        if "ts" in spec:
            spec["ts"] = _ts(spec["ts"])
        return container_row(**spec)
    if "columns" in event:
        row = dict(event["columns"])
        for key in ("@timestamp",):
            if key in row:
                row[key] = _ts(row[key])
        row.setdefault("event.id", f"col-{next(_ids)}")
        return row
    return audit_row(event)


def batch_of(events: Iterable[Mapping[str, Any]]) -> pa.RecordBatch:
    return from_pylist([row_for(e) for e in events])


@dataclass
class RuleTestResult:
    rule: str
    ok: bool
    failures: list[str]
    cases: int


def run_rule_test(test_file: Path, ruleset: RuleSet) -> RuleTestResult:
    """Run one rule's match / no_match events through a fresh detector; list what went wrong."""
    from kubetrail.detect.config import DetectConfig
    from kubetrail.detect.detector import Detector

    spec = yaml.safe_load(test_file.read_text()) or {}
    name = str(spec.get("rule") or test_file.stem)
    failures: list[str] = []
    cases = 0
    known = {r.name or r.id for r in ruleset.rules} | {c.name or c.id for c in ruleset.correlations}
    if name not in known:
        return RuleTestResult(name, False, [f"rule {name!r} is not loaded (or disabled)"], 0)
    is_corr = bool(spec.get("correlation"))
    ruleset = _only(ruleset, name)
    for expect, items in (("match", spec.get("match") or []), ("no_match", spec.get("no_match") or [])):
        for i, item in enumerate(items):
            cases += 1
            events = item if is_corr else [item]
            detector = Detector(DetectConfig(rules=[], suppress_secs=0), ruleset=copy.deepcopy(ruleset))
            detector.sinks = []
            fired = False
            for event in events:  # one batch per event: correlation state must carry across batches
                _, alerts = detector.process(batch_of([event]))
                fired |= any(_alert_rule_name(a.rule_id, ruleset) == name for a in alerts)
            detector.close()
            if fired != (expect == "match"):
                failures.append(f"{expect}[{i}]: {'fired' if fired else 'did not fire'}")
    if not spec.get("match"):
        failures.append("no match events")
    if not spec.get("no_match"):
        failures.append("no no_match events")
    return RuleTestResult(name, not failures, failures, cases)


def _only(ruleset: RuleSet, name: str) -> RuleSet:
    """The rule under test and, for a correlation, the rules it references (fast, isolated tests)."""
    corrs = [c for c in ruleset.correlations if (c.name or c.id) == name]
    wanted = {r for c in corrs for r in c.rule_ids}
    rules = [r for r in ruleset.rules if (r.name or r.id) == name or r.id in wanted]
    return RuleSet(rules, corrs, [])


def _alert_rule_name(rule_id: str, ruleset: RuleSet) -> str:
    for r in ruleset.rules:
        if r.id == rule_id:
            return r.name or r.id
    for c in ruleset.correlations:
        if c.id == rule_id:
            return c.name or c.id
    return rule_id
