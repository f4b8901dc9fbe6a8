"""SigmaHQ's 16 Kubernetes audit rules, unmodified: each compiles, runs, and fires on a real-shaped event.

The events are native audit.k8s.io/v1 Events as kube-apiserver writes them. Three rules only fire
because the pipeline repairs their field names (``hostPath``, ``capabilities``, bare ``apiGroup``).
``kubernetes_audit_potential_enumeration_activity`` compares ``responseStatus.code`` (an integer) with
the string 'ALLOW': it compiles and runs, and can never match (documented in docs/detect.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetrail.detect.engine import Engine
from kubetrail.detect.rules import RuleSet, load_rules
from kubetrail.detect.testing import batch_of


def ev(verb: str, resource: str, **kw: Any) -> dict[str, Any]:
    ref = {"resource": resource, "namespace": kw.pop("ns", "default"), "apiVersion": "v1"}
    for k in ("apiGroup", "subresource", "name"):
        if k in kw:
            ref[k] = kw.pop(k)
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.7"],
        "userAgent": "kubectl/v1.29.1 (linux/amd64) kubernetes/bc401b9",
        "objectRef": ref,
        "responseStatus": {"code": kw.pop("code", 200)},
        "requestURI": kw.pop("uri", f"/api/v1/namespaces/default/{resource}"),
        "requestReceivedTimestamp": "2026-11-27T12:00:00.000000Z",
    }
    event.update(kw)
    return event


POD = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}
FIRING: dict[str, dict[str, Any]] = {
    "kubernetes_audit_change_admission_controller": ev(
        "create", "mutatingwebhookconfigurations", apiGroup="admissionregistration.k8s.io", ns=None
    ),
    "kubernetes_audit_cronjob_modification": ev("patch", "cronjobs", apiGroup="batch"),
    "kubernetes_audit_deployment_deleted": ev("delete", "deployments", apiGroup="apps"),
    "kubernetes_audit_events_deleted": ev("delete", "events"),
    "kubernetes_audit_exec_into_container": ev("create", "pods", subresource="exec", code=101),
    "kubernetes_audit_hostpath_mount": ev(
        "create",
        "pods",
        requestObject={
            **POD,
            "spec": {
                "containers": [{"name": "c", "image": "nginx"}],
                "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}],
            },
        },
    ),
    "kubernetes_audit_pod_in_system_namespace": ev("create", "pods", ns="kube-system"),
    "kubernetes_audit_privileged_pod_creation": ev(
        "create",
        "pods",
        requestObject={
            **POD,
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "nginx",
                        "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
                    }
                ]
            },
        },
    ),
    "kubernetes_audit_rbac_permisions_listing": ev(
        "create", "selfsubjectrulesreviews", apiGroup="authorization.k8s.io", ns=None
    ),
    "kubernetes_audit_rolebinding_modification": ev(
        "create", "clusterrolebindings", apiGroup="rbac.authorization.k8s.io", ns=None
    ),
    "kubernetes_audit_secrets_enumeration": ev("list", "secrets"),
    "kubernetes_audit_secrets_modified_or_deleted": ev("delete", "secrets", name="db"),
    "kubernetes_audit_serviceaccount_creation": ev("create", "serviceaccounts"),
    "kubernetes_audit_sidecar_injection": ev("patch", "deployments", apiGroup="apps"),
    "kubernetes_audit_unauthorized_unauthenticated_actions": ev("get", "secrets", code=403),
}
NEVER = "kubernetes_audit_potential_enumeration_activity"
# An event that has everything the 'ALLOW' rule means: an allowed exec of /bin/sh (the decision is
# in the annotations, the code is 101).
ALLOWED_EXEC = ev(
    "create",
    "pods",
    subresource="exec",
    code=101,
    uri="/api/v1/namespaces/default/pods/web/exec?command=%2Fbin%2Fsh&stdin=true",
    annotations={"authorization.k8s.io/decision": "allow"},
)
QUIET = ev("get", "configmaps", name="app-config")


_CACHE: dict[str, RuleSet] = {}


@pytest.fixture
def sigmahq(shared_data: Path) -> RuleSet:
    if "r" not in _CACHE:
        _CACHE["r"] = load_rules([shared_data / "sigma-kubernetes-audit"])
    return _CACHE["r"]


def _fired(ruleset: RuleSet, events: list[dict[str, Any]]) -> dict[str, list[int]]:
    engine = Engine(ruleset)
    try:
        matches = engine.evaluate(batch_of(events))
    finally:
        engine.close()
    by_file = {}
    for m in matches.matches:
        by_file[Path(m.rule.path).stem] = m.rows.tolist()
    return by_file


def test_all_sixteen_compile_and_run(sigmahq: RuleSet, shared_data: Path) -> None:
    files = sorted((shared_data / "sigma-kubernetes-audit").glob("*.yml"))
    assert len(files) == 16
    assert sigmahq.errors == []
    assert {Path(r.path).stem for r in sigmahq.rules} == {f.stem for f in files}
    assert set(FIRING) | {NEVER} == {f.stem for f in files}


def test_each_rule_fires_on_its_event(sigmahq: RuleSet) -> None:
    names = list(FIRING)
    fired = _fired(sigmahq, [FIRING[n] for n in names] + [ALLOWED_EXEC, QUIET])
    for i, name in enumerate(names):
        assert i in fired.get(name, []), f"{name} did not fire on its event"
    quiet_row = len(names) + 1
    assert all(quiet_row not in rows for rows in fired.values())


def test_allow_rule_runs_but_cannot_match(sigmahq: RuleSet) -> None:
    """responseStatus.code is an integer; 'ALLOW' is compared as text and never equals a number."""
    fired = _fired(sigmahq, [ALLOWED_EXEC])
    assert NEVER not in fired
    assert "kubernetes_audit_exec_into_container" in fired  # the event itself is matchable


@pytest.mark.parametrize(
    ("name", "event"),
    [
        (
            "kubernetes_audit_hostpath_mount",
            ev("create", "pods", requestObject={**POD, "spec": {"volumes": [{"name": "d", "emptyDir": {}}]}}),
        ),
        (
            "kubernetes_audit_privileged_pod_creation",
            ev(
                "create",
                "pods",
                requestObject={
                    **POD,
                    "spec": {
                        "containers": [
                            {
                                "name": "c",
                                "image": "nginx",
                                "securityContext": {"capabilities": {"drop": ["ALL"]}},
                            }
                        ]
                    },
                },
            ),
        ),
        ("kubernetes_audit_sidecar_injection", ev("patch", "deployments", apiGroup="extensions")),
        ("kubernetes_audit_exec_into_container", ev("get", "pods", subresource="log")),
    ],
)
def test_repaired_rules_do_not_overmatch(sigmahq: RuleSet, name: str, event: dict[str, Any]) -> None:
    assert name not in _fired(sigmahq, [event])
