from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrail.chunk import Chunk, Origin
from kubetrail.formats.audit import AuditParser, events_to_batch
from tests.formats._node_helpers import NOW, check_fuzz, comparable, file_origin, mutations, parse_in_chunks

EVENT: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "RequestResponse",
    "auditID": "2f7e1c5a-3b7d-4e7a-9c1e-0a1b2c3d4e5f",
    "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/default/pods/web-0/exec?command=sh&container=web&stdin=true",
    "verb": "create",
    "user": {
        "username": "kubernetes-admin",
        "uid": "aws-iam-authenticator:123",
        "groups": ["system:masters", "system:authenticated"],
        "extra": {"arn": ["arn:aws:sts::123:assumed-role/admin/alice"]},
    },
    "impersonatedUser": {"username": "system:serviceaccount:default:builder", "groups": ["x"]},
    "sourceIPs": ["203.0.113.7", "10.0.0.1"],
    "userAgent": "kubectl/v1.30.0 (linux/amd64) kubernetes/abc",
    "objectRef": {
        "resource": "pods",
        "namespace": "default",
        "name": "web-0",
        "apiVersion": "v1",
        "subresource": "exec",
        "uid": "u-1",
    },
    "responseStatus": {"metadata": {}, "status": "Success", "code": 101},
    "requestObject": {"kind": "PodExecOptions", "command": ["sh"], "stdin": True},
    "requestReceivedTimestamp": "2024-05-05T17:59:40.692994Z",
    "stageTimestamp": "2024-05-05T17:59:41.712345Z",
    "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"},
}


def parse(data: bytes) -> list[dict]:
    return AuditParser().parse(Chunk(file_origin("audit", 0, "/var/log/audit.log"), data), NOW).to_pylist()


def jsonl(*events: Any) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def test_native_event_mapping() -> None:
    (row,) = parse(jsonl(EVENT))
    assert row["event.parse_error"] is None
    assert row["kubernetes.audit.auditID"] == EVENT["auditID"]
    assert row["kubernetes.audit.level"] == "RequestResponse"
    assert row["kubernetes.audit.stage"] == "ResponseComplete"
    assert row["kubernetes.audit.verb"] == row["event.action"] == "create"
    assert row["kubernetes.audit.requestURI"] == EVENT["requestURI"]
    assert row["kubernetes.audit.user.username"] == row["user.name"] == "kubernetes-admin"
    assert row["kubernetes.audit.user.uid"] == "aws-iam-authenticator:123"
    assert row["kubernetes.audit.user.groups"] == ["system:masters", "system:authenticated"]
    assert row["kubernetes.audit.impersonatedUser.username"] == "system:serviceaccount:default:builder"
    assert row["kubernetes.audit.sourceIPs"] == ["203.0.113.7", "10.0.0.1"]
    assert row["source.ip"] == "203.0.113.7"
    assert row["kubernetes.audit.userAgent"] == row["user_agent.original"] == EVENT["userAgent"]
    assert row["kubernetes.audit.objectRef.resource"] == "pods"
    assert row["kubernetes.audit.objectRef.subresource"] == "exec"
    assert row["kubernetes.audit.objectRef.namespace"] == row["kubernetes.namespace"] == "default"
    assert row["kubernetes.audit.objectRef.name"] == "web-0"
    assert row["kubernetes.audit.objectRef.apiGroup"] is None
    assert row["kubernetes.audit.objectRef.apiVersion"] == "v1"
    assert row["kubernetes.audit.responseStatus.code"] == 101
    assert orjson.loads(row["kubernetes.audit.annotations"]) == EVENT["annotations"]
    assert orjson.loads(row["kubernetes.audit.requestObject"]) == EVENT["requestObject"]
    assert row["kubernetes.audit.responseObject"] is None
    assert row["kubernetes.audit.requestReceivedTimestamp"] == datetime(
        2024, 5, 5, 17, 59, 40, 692994, tzinfo=UTC
    )
    assert row["@timestamp"] == row["kubernetes.audit.stageTimestamp"]
    assert row["@timestamp"] == datetime(2024, 5, 5, 17, 59, 41, 712345, tzinfo=UTC)
    assert row["event.outcome"] == "success"
    assert row["event.dataset"] == "audit" and row["event.module"] == "audit"
    assert row["message"] == "kubernetes-admin create pods/exec default/web-0 -> 101"
    assert orjson.loads(row["attributes"]) == {
        "user.extra": {"arn": ["arn:aws:sts::123:assumed-role/admin/alice"]},
        "impersonatedUser": {"username": "system:serviceaccount:default:builder", "groups": ["x"]},
        "objectRef.uid": "u-1",
        "responseStatus.status": "Success",
    }
    assert row["event.id"] == f"{file_origin('audit').id_prefix()}-0"


@pytest.mark.parametrize(
    ("decision", "code", "outcome"),
    [
        ("allow", 200, "success"),
        ("forbid", 403, "failure"),
        ("allow", 500, "failure"),
        ("forbid", None, "failure"),
        (None, 404, "failure"),
        (None, None, "unknown"),
        ("allow", None, "unknown"),
    ],
)
def test_outcome(decision: str | None, code: int | None, outcome: str) -> None:
    event: dict[str, Any] = {"kind": "Event", "verb": "get"}
    if decision:
        event["annotations"] = {"authorization.k8s.io/decision": decision}
    if code is not None:
        event["responseStatus"] = {"code": code}
    assert parse(jsonl(event))[0]["event.outcome"] == outcome


def test_missing_timestamps_fall_back() -> None:
    received_only = {**EVENT, "stageTimestamp": None}
    rows = parse(
        jsonl(received_only, {"kind": "Event", "verb": "list"}, {**EVENT, "stageTimestamp": "never"})
    )
    assert rows[0]["@timestamp"] == datetime(2024, 5, 5, 17, 59, 40, 692994, tzinfo=UTC)
    assert rows[1]["@timestamp"] == NOW and rows[1]["event.parse_error"] is None
    assert rows[2]["event.parse_error"] == "bad_timestamp"


def test_event_list_bodies() -> None:
    body = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": [EVENT, {**EVENT, "verb": "get", "auditID": "second"}, "not an event"],
    }
    rows = parse(jsonl(EVENT, body, EVENT))
    prefix = file_origin("audit").id_prefix()
    size = len(orjson.dumps(EVENT)) + 1
    third = size + len(orjson.dumps(body)) + 1
    assert [r["event.id"] for r in rows] == [
        f"{prefix}-0",
        f"{prefix}-{size}.0",
        f"{prefix}-{size}.1",
        f"{prefix}-{size}.2",
        f"{prefix}-{third}",
    ]
    assert [r["kubernetes.audit.auditID"] for r in rows[1:3]] == [EVENT["auditID"], "second"]
    assert [r["log.offset"] for r in rows[1:4]] == [size] * 3
    assert rows[3]["event.parse_error"] == "bad_json"
    assert rows[4]["event.parse_error"] is None and rows[4]["kubernetes.audit.verb"] == "create"
    assert len({r["event.id"] for r in rows}) == 5


def test_aks_envelopes() -> None:
    record = {
        "category": "kube-audit",
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "resourceId": "/subscriptions/x/aks",
        "properties": {"log": json.dumps(EVENT), "pod": "kube-apiserver-1"},
    }
    rows = parse(jsonl(record, {"records": [record, record]}))
    assert len(rows) == 3
    for row in rows:
        assert row["event.parse_error"] is None
        assert row["kubernetes.audit.verb"] == "create" and row["source.ip"] == "203.0.113.7"
        assert row["kubernetes.audit.objectRef.subresource"] == "exec"
        azure = orjson.loads(row["attributes"])["azure"]
        assert azure["resourceId"] == "/subscriptions/x/aks" and azure["properties"] == {
            "pod": "kube-apiserver-1"
        }
    assert rows[1]["event.id"].endswith(".0") and rows[2]["event.id"].endswith(".1")


def test_gke_mapping() -> None:
    entry = {
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "authorizationInfo": [{"granted": True, "permission": "io.k8s.core.v1.pods.exec.create"}],
            "methodName": "io.k8s.core.v1.pods.exec.create",
            "requestMetadata": {"callerIp": "198.51.100.4", "callerSuppliedUserAgent": "kubectl/v1.29.1"},
            "resourceName": "core/v1/namespaces/prod/pods/db-0/exec",
            "serviceName": "k8s.io",
            "status": {},
            "request": {"@type": "core.k8s.io/v1.PodExecOptions", "command": ["sh"]},
        },
        "operation": {"id": "audit-123", "producer": "k8s.io", "first": True, "last": True},
        "labels": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "access granted"},
        "timestamp": "2024-02-16T11:48:22.742Z",
    }
    rbac = {
        "protoPayload": {
            "methodName": "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            "authorizationInfo": [{"granted": False}],
            "serviceName": "k8s.io",
            "status": {"code": 7, "message": "PERMISSION_DENIED"},
        }
    }
    row, denied = parse(jsonl(entry, rbac))
    assert row["event.parse_error"] is None
    assert row["kubernetes.audit.verb"] == "create"
    assert row["kubernetes.audit.objectRef.resource"] == "pods"
    assert row["kubernetes.audit.objectRef.subresource"] == "exec"
    assert (
        row["kubernetes.audit.objectRef.namespace"] == "prod"
        and row["kubernetes.audit.objectRef.name"] == "db-0"
    )
    assert (
        row["kubernetes.audit.objectRef.apiGroup"] == ""
        and row["kubernetes.audit.objectRef.apiVersion"] == "v1"
    )
    assert row["user.name"] == "alice@example.com" and row["source.ip"] == "198.51.100.4"
    assert row["user_agent.original"] == "kubectl/v1.29.1"
    assert row["kubernetes.audit.responseStatus.code"] == 200
    assert (
        row["kubernetes.audit.auditID"] == "audit-123" and row["kubernetes.audit.stage"] == "ResponseComplete"
    )
    assert orjson.loads(row["kubernetes.audit.annotations"])["authorization.k8s.io/decision"] == "allow"
    assert orjson.loads(row["kubernetes.audit.requestObject"])["command"] == ["sh"]
    assert row["@timestamp"] == datetime(2024, 2, 16, 11, 48, 22, 742000, tzinfo=UTC)
    assert "request" not in orjson.loads(row["attributes"])["gcp"]["protoPayload"]
    # no resourceName: resource and group from methodName (short group names expanded)
    assert denied["kubernetes.audit.objectRef.resource"] == "clusterrolebindings"
    assert denied["kubernetes.audit.objectRef.apiGroup"] == "rbac.authorization.k8s.io"
    assert denied["kubernetes.audit.responseStatus.code"] == 403
    assert denied["event.outcome"] == "failure"
    assert orjson.loads(denied["kubernetes.audit.annotations"]) == {"authorization.k8s.io/decision": "forbid"}


def test_invalid_lines_salvaged_and_flagged() -> None:
    cut = orjson.dumps(EVENT)[:900]
    rows = parse(cut + b"\n" + b"[1,2]\n" + b'{"hello": "world"}\n' + b"\n")
    assert [r["event.parse_error"] for r in rows] == [
        "bad_json",
        "bad_json",
        "not_audit_event",
        "empty_line",
    ]
    salvaged = rows[0]
    assert salvaged["kubernetes.audit.auditID"] == EVENT["auditID"]
    assert salvaged["kubernetes.audit.verb"] == "create" and salvaged["user.name"] == "kubernetes-admin"
    assert salvaged["source.ip"] == "203.0.113.7"
    assert salvaged["kubernetes.audit.objectRef.resource"] == "pods"
    assert salvaged["kubernetes.audit.objectRef.namespace"] == "default"
    assert salvaged["message"] == "kubernetes-admin create pods/exec default/web-0 -> 101"


def test_bulk_path_matches_line_by_line() -> None:
    """Chunks of 64+ lines take the one-parse fast query; the result must equal the full query's."""
    aks = {"category": "kube-audit", "properties": {"log": json.dumps(EVENT)}}
    gke = {"protoPayload": {"methodName": "io.k8s.core.v1.pods.list", "serviceName": "k8s.io"}}
    body = {"kind": "EventList", "items": [EVENT, EVENT]}
    kinds = [EVENT, aks, gke, body, {"kind": "Event", "verb": "get"}]
    lines = b"".join(orjson.dumps(kinds[i % 5]) + b"\n" if i % 7 else b"{broken\n" for i in range(100))
    bulk = AuditParser().parse(Chunk(file_origin("audit"), lines), NOW).to_pylist()
    single = []
    offset = 0
    all_lines = lines.splitlines(keepends=True)
    for start in range(0, len(all_lines), 10):  # 10-line chunks take the small-chunk path
        piece = b"".join(all_lines[start : start + 10])
        single += AuditParser().parse(Chunk(file_origin("audit", offset), piece), NOW).to_pylist()
        offset += len(piece)
    assert len(bulk) == len(single) == 100 + 20 - 3  # 20 EventLists (2 items) minus broken ones
    assert bulk == single


def test_events_to_batch_ids() -> None:
    origin = Origin(node="server", source="audit", receiver="labelled", batch_id="panther", offset=5)
    batch = events_to_batch([EVENT, {"kind": "Event", "verb": "get"}], origin, NOW)
    assert batch.column("event.id").to_pylist() == [f"{origin.id_prefix()}-5", f"{origin.id_prefix()}-6"]
    assert batch.column("kubernetes.audit.verb").to_pylist() == ["create", "get"]


# --- the labelled third-party events: all three shapes ------------------------------------------------

NOT_KUBERNETES = {
    # an Azure activity-log record about a VM write (category Administrative): no properties.log
    ("Azure.MonitorActivity", "Microsoft.Compute/virtualMachines/write"),
    # a GCP audit record of compute.instances.list: not a GKE audit entry
    ("GCP.AuditLog", "compute.instances.list"),
}


def _labelled(shared_data: Path) -> list[dict[str, Any]]:
    path = shared_data / "labelled-audit-events" / "panther_k8s_rule_tests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _native_event(record: dict[str, Any]) -> dict[str, Any] | None:
    log = record["log"]
    if record["log_type"] == "Amazon.EKS.Audit":
        return log
    if record["log_type"] == "Azure.MonitorActivity" and "log" in log.get("properties", {}):
        return json.loads(log["properties"]["log"])
    return None


def test_labelled_events_all_shapes(shared_data: Path) -> None:
    records = _labelled(shared_data)
    origin = Origin(node="server", source="audit", receiver="labelled", batch_id="panther")
    rows = events_to_batch([r["log"] for r in records], origin, NOW).to_pylist()
    assert len(rows) == len(records) == 237
    flagged = set()
    for record, row in zip(records, rows, strict=True):
        if row["event.parse_error"] is not None:
            log = record["log"]
            what = log.get("operationName") or log.get("protoPayload", {}).get("methodName")
            flagged.add((record["log_type"], what))
            assert row["event.parse_error"] == "not_k8s_audit"
            continue
        native = _native_event(record)
        if native is not None:  # EKS and AKS: compare with the Event itself
            ref = native.get("objectRef") or {}
            assert row["kubernetes.audit.verb"] == native.get("verb")
            assert row["user.name"] == (native.get("user") or {}).get("username")
            assert row["kubernetes.audit.objectRef.resource"] == ref.get("resource")
            assert row["kubernetes.audit.objectRef.subresource"] == ref.get("subresource")
            assert row["kubernetes.namespace"] == ref.get("namespace")
            assert row["kubernetes.audit.objectRef.name"] == ref.get("name")
            assert row["source.ip"] == (native.get("sourceIPs") or [None])[0]
            assert row["kubernetes.audit.responseStatus.code"] == (native.get("responseStatus") or {}).get(
                "code"
            )
            if native.get("requestObject") is not None:
                assert orjson.loads(row["kubernetes.audit.requestObject"]) == native["requestObject"]
        else:  # GKE: the principal and caller always land; verb is the methodName's last part
            payload = record["log"]["protoPayload"]
            assert row["user.name"] == payload["authenticationInfo"].get("principalEmail")
            assert row["source.ip"] == (payload.get("requestMetadata") or {}).get("callerIP")
            method = payload["methodName"].split(".")
            assert row["kubernetes.audit.verb"] == (method[-1] if len(method) >= 5 else None)
    assert flagged == NOT_KUBERNETES
    by_type = {r["log_type"] for r in records}
    assert by_type == {"Amazon.EKS.Audit", "Azure.MonitorActivity", "GCP.AuditLog"}


def test_labelled_gke_spot_checks(shared_data: Path) -> None:
    records = [r for r in _labelled(shared_data) if r["log_type"] == "GCP.AuditLog"]
    origin = Origin(node="server", source="audit", receiver="labelled", batch_id="gke")
    rows = {
        r["kubernetes.audit.objectRef.name"]: r
        for r in events_to_batch([r["log"] for r in records], origin, NOW).to_pylist()
    }
    pod = rows[
        "database"
    ]  # io.k8s.core.v1.pods.exec.create on core/v1/namespaces/production/pods/database/exec
    assert (pod["kubernetes.audit.verb"], pod["kubernetes.audit.objectRef.resource"]) == ("create", "pods")
    assert (
        pod["kubernetes.audit.objectRef.subresource"] == "exec"
        and pod["kubernetes.namespace"] == "production"
    )
    role = rows[
        "system:controller"
    ]  # rbac.authorization.k8s.io/v1/namespaces/kube-system/roles/system:controller
    assert role["kubernetes.audit.objectRef.apiGroup"] == "rbac.authorization.k8s.io"
    assert (role["kubernetes.audit.verb"], role["kubernetes.namespace"]) == ("patch", "kube-system")
    secret = rows["tls-cert"]  # status code 7, authorizationInfo granted false
    assert secret["kubernetes.audit.responseStatus.code"] == 403 and secret["event.outcome"] == "failure"
    privileged = rows["test-privileged-pod"]
    assert orjson.loads(privileged["kubernetes.audit.requestObject"])["spec"]["containers"][0][
        "securityContext"
    ] == {"privileged": True}
    assert privileged["@timestamp"] == datetime(2024, 2, 13, 12, 45, 6, 73000, tzinfo=UTC)


# --- properties --------------------------------------------------------------------------------------

_events = st.builds(
    lambda verb, user, ns, code, extra: orjson.dumps(
        {
            **EVENT,
            "verb": verb,
            "user": {"username": user},
            "objectRef": {"resource": "pods", "namespace": ns},
            "responseStatus": {"code": code},
            "requestObject": extra,
        }
    ),
    st.sampled_from(["get", "list", "create", "delete", "watch"]),
    st.text(max_size=12),
    st.text(max_size=8),
    st.integers(100, 599),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=6,
    ),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_events | st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.data())
def test_lossless_under_any_chunk_split(lines: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(line + b"\n" for line in lines)
    cuts = data.draw(st.lists(st.integers(0, max(len(blob), 1)), max_size=6))
    whole = parse_in_chunks(AuditParser, blob, [], "audit")
    assert comparable(parse_in_chunks(AuditParser, blob, cuts, "audit")) == comparable(whole)
    assert len(whole) == len(lines)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300) | st.lists(_events | mutations(_events), max_size=4).map(b"\n".join))
def test_fuzz_never_raises(data: bytes) -> None:
    rows = check_fuzz(AuditParser, data, "audit")
    assert len(rows) >= data.count(b"\n")
