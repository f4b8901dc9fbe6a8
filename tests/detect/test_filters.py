"""Sigma filters: the project's GitOps filter silences Argo CD / Flux patches for SigmaHQ's sidecar
injection rule in streaming and retro-hunt evaluation alike, keeps the rule for everyone else, and a
filter that cannot apply is reported without disturbing the other filters or rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from kubetrail.detect.config import DetectConfig
from kubetrail.detect.detector import Detector
from kubetrail.detect.hunt import hunt
from kubetrail.detect.rules import load_rules
from kubetrail.detect.testing import batch_of

REPO = Path(__file__).resolve().parents[2]
GITOPS_FILTER = REPO / "rules" / "filters" / "gitops-controllers.yml"
SIDECAR_ID = "ad9012a6-e518-4432-9890-f3b82b8fc71f"
ARGOCD = "system:serviceaccount:argocd:argocd-application-controller"
FLUX = "system:serviceaccount:flux-system:kustomize-controller"

RULE = """title: Deployment Patched
id: 7c0e2f55-2b8e-4f37-a7a4-0f1d4b8c9e21
name: test_deployment_patched
logsource: {product: kubernetes, service: audit}
detection:
    selection: {verb: patch, objectRef.resource: deployments}
    condition: selection
level: medium
"""


def patch(user: str, i: int) -> dict[str, Any]:
    return {
        "verb": "patch",
        "user": {"username": user},
        "objectRef": {"resource": "deployments", "apiGroup": "apps", "namespace": "shop", "name": "web"},
        "responseStatus": {"code": 200},
        "auditID": f"patch-{i}",
        "requestReceivedTimestamp": f"2026-11-27T12:00:{i:02d}Z",
    }


def matched_users(det: Detector, rule_id: str, events: list[dict[str, Any]]) -> set[str]:
    _, alerts = det.process(batch_of(events))
    return {a.group_key["user.name"] for a in alerts if a.rule_id == rule_id}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def filter_doc(
    refs: str, users: str = "'alice'", logsource: str = "{product: kubernetes, service: audit}"
) -> str:
    return f"""title: Filter {refs}
id: 0b9f6a1e-6f51-4c1d-8d0e-{abs(hash(refs)) % 10**12:012d}
logsource: {logsource}
filter:
    rules: {refs}
    trusted: {{user.username: [{users}]}}
    condition: not trusted
"""


def test_gitops_filter_targets_the_sigmahq_rule_id(shared_data: Path) -> None:
    rule_file = shared_data / "sigma-kubernetes-audit" / "kubernetes_audit_sidecar_injection.yml"
    assert f"id: {SIDECAR_ID}" in rule_file.read_text()
    assert SIDECAR_ID in GITOPS_FILTER.read_text()


def test_gitops_filter_silences_controllers_in_streaming_and_keeps_other_users(shared_data: Path) -> None:
    rule_file = shared_data / "sigma-kubernetes-audit" / "kubernetes_audit_sidecar_injection.yml"
    events = [patch(ARGOCD, 1), patch(FLUX, 2), patch("mallory", 3)]
    unfiltered = Detector(DetectConfig(rules=[str(rule_file)]))
    assert matched_users(unfiltered, SIDECAR_ID, events) == {ARGOCD, FLUX, "mallory"}
    unfiltered.close()
    det = Detector(DetectConfig(rules=[str(rule_file), str(GITOPS_FILTER.parent)]))
    assert det.ruleset.filter_issues == [] and det.ruleset.errors == []
    assert det.ruleset.by_id()[SIDECAR_ID].filters  # compiled into the rule's SQL
    assert matched_users(det, SIDECAR_ID, events) == {"mallory"}
    det.close()


def test_gitops_filter_applies_to_retro_hunts(shared_data: Path) -> None:
    rules = load_rules([shared_data / "sigma-kubernetes-audit", REPO / "rules"])
    assert rules.filter_issues == [] and rules.errors == []
    history = pa.Table.from_batches([batch_of([patch(ARGOCD, 1), patch("mallory", 2), patch(ARGOCD, 3)])])
    con = duckdb.connect()
    con.register("logs", history)
    alerts = [a for a in hunt(con, "logs", rules).alerts if a.rule_id == SIDECAR_ID]
    assert [(a.group_key["user.name"], a.event_ids) for a in alerts] == [("mallory", ["patch-2"])]


def test_unknown_rule_is_reported_and_other_filters_still_apply(tmp_path: Path) -> None:
    write(tmp_path, "rule.yml", RULE)
    write(tmp_path, "typo.yml", filter_doc("[no-such-rule]", "'mallory'"))
    write(tmp_path, "good.yml", filter_doc("[test_deployment_patched]", "'alice'"))  # by name
    det = Detector(DetectConfig(rules=[str(tmp_path)]))
    [issue] = det.ruleset.filter_issues
    assert issue.kind == "unknown_rule" and issue.reference == "no-such-rule"
    assert issue.path.endswith("typo.yml") and "typo.yml" in issue.error and "no-such-rule" in issue.error
    assert det.ruleset.errors == []
    rid = "7c0e2f55-2b8e-4f37-a7a4-0f1d4b8c9e21"
    assert matched_users(det, rid, [patch("alice", 1), patch("mallory", 2)]) == {"mallory"}
    det.close()


def test_filters_path_in_config_and_logsource_mismatch_reported(tmp_path: Path) -> None:
    rules_dir, filters_dir = tmp_path / "rules", tmp_path / "filters"
    rules_dir.mkdir()
    filters_dir.mkdir()
    write(rules_dir, "rule.yml", RULE)
    write(filters_dir, "f.yml", filter_doc("any", "'alice', 'bob'"))
    write(filters_dir, "other.yml", filter_doc("[test_deployment_patched]", "'x'", "{product: linux}"))
    det = Detector(DetectConfig(rules=[str(rules_dir)], filters=[str(filters_dir)]))
    assert [i.kind for i in det.ruleset.filter_issues] == ["logsource"]
    rid = "7c0e2f55-2b8e-4f37-a7a4-0f1d4b8c9e21"
    users = matched_users(det, rid, [patch("alice", 1), patch("bob", 2), patch("carol", 3)])
    assert users == {"carol"}
    det.close()


def test_filter_that_does_not_compile_is_reported_and_the_rule_keeps_running(tmp_path: Path) -> None:
    write(tmp_path, "rule.yml", RULE)
    write(tmp_path, "good.yml", filter_doc("[test_deployment_patched]", "'alice'"))
    bad = filter_doc("[test_deployment_patched]", "'x'").replace(
        "user.username: ['x']", "user.username|expand: '%no_such_placeholder%'"
    )
    write(tmp_path, "bad.yml", bad)
    ruleset = load_rules([tmp_path])
    assert [i.kind for i in ruleset.filter_issues] == ["compile"]
    assert "bad.yml" in ruleset.filter_issues[0].error
    det = Detector(DetectConfig(rules=[str(tmp_path)]), ruleset=ruleset)
    rid = "7c0e2f55-2b8e-4f37-a7a4-0f1d4b8c9e21"
    assert matched_users(det, rid, [patch("alice", 1), patch("mallory", 2)]) == {"mallory"}
    det.close()
