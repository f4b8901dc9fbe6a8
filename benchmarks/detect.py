"""Detection benchmark: pack precision/recall on labelled events, streaming throughput, retro-hunt.

    .venv/bin/python benchmarks/detect.py [--quick]

Prints one JSON object. Families map Panther's labelled Kubernetes rules (../shared/data) to the pack
rules that cover the same behaviour; an event counts as detected when any rule of the family fires.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kubetrail.chunk import Origin
from kubetrail.detect.engine import Engine
from kubetrail.detect.hunt import hunt
from kubetrail.detect.rules import load_rules
from kubetrail.detect.testing import batch_of, container_row
from kubetrail.formats.audit import events_to_batch
from kubetrail.schema import from_pylist

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FAMILIES: dict[str, list[str]] = {
    "Kubernetes.AdmissionController.Created": ["k8s_admission_webhook_changed"],
    "Kubernetes.API.AnonymousAccess": ["k8s_anonymous_request_allowed"],
    "Kubernetes.API.IOC.Activity": ["k8s_offensive_tool_user_agent"],
    "Kubernetes.API.Multiple403.PublicIP": ["k8s_auth_failure", "k8s_secret_access_denied"],
    "Kubernetes.BulkSecretAccess": [
        "k8s_secret_read",
        "k8s_secret_access_denied",
        "k8s_secrets_list_all_namespaces",
    ],
    "Kubernetes.ClientCertificate.Created": ["k8s_client_certificate_requested", "k8s_csr_approved"],
    "Kubernetes.ClusterRoleBinding.Privileged": ["k8s_binding_cluster_admin", "k8s_binding_anonymous"],
    "Kubernetes.CronJob.CreatedOrModified": ["k8s_cronjob_created"],
    "Kubernetes.DaemonSet.Created": ["k8s_daemonset_created"],
    "Kubernetes.Kubectl.CP.Operation": ["k8s_kubectl_cp"],
    "Kubernetes.Pod.Dangerous.Capabilities": ["k8s_pod_dangerous_capabilities"],
    "Kubernetes.Pod.Exec": ["k8s_pod_exec"],
    "Kubernetes.Pod.Host.IPC": ["k8s_pod_hostipc"],
    "Kubernetes.Pod.Host.Network": ["k8s_pod_hostnetwork"],
    "Kubernetes.Pod.Host.PID": ["k8s_pod_hostpid"],
    "Kubernetes.Pod.HostPath.Volume": ["k8s_pod_hostpath_root", "k8s_pod_hostpath_sensitive"],
    "Kubernetes.Pod.Privileged.Created": ["k8s_privileged_pod"],
    "Kubernetes.Pod.StealServiceAccountToken": ["k8s_exec_read_sa_token"],
    "Kubernetes.Pod.SystemNamespace": ["k8s_kube_system_modified_by_user"],
    "Kubernetes.Role.NodeProxyPermissions": ["k8s_role_nodes_proxy"],
    "Kubernetes.Role.PodExec": ["k8s_role_pod_exec"],
    "Kubernetes.Role.Wildcard": ["k8s_role_wildcard"],
    "Kubernetes.Secrets.DumpAllNamespaces": ["k8s_secrets_list_all_namespaces"],
    "Kubernetes.Service.NodePort.Deployed": ["k8s_service_nodeport"],
    "Kubernetes.ServiceAccount.TokenCreated": ["k8s_sa_token_request"],
    "Kubernetes.System.Principal.PublicIP": ["k8s_system_principal_outside_cluster"],
    "Kubernetes.SystemRole.Modified": ["k8s_system_role_modified"],
}


def precision_recall() -> dict[str, object]:
    path = SHARED / "labelled-audit-events" / "panther_k8s_rule_tests.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pack = load_rules([REPO / "rules"])
    engine = Engine(pack)
    batch = events_to_batch(
        [r["log"] for r in records], Origin(node="bench", source="audit", receiver="bench")
    )
    fired: dict[str, set[int]] = {}
    for m in engine.evaluate(batch).matches:
        fired[m.rule.name or m.rule.id] = set(m.rows.tolist())
    per_family: dict[str, dict[str, float]] = {}
    tp_all = fp_all = fn_all = 0
    for family, names in FAMILIES.items():
        hit = set().union(*(fired.get(n, set()) for n in names))
        tp = fp = fn = 0
        for i, r in enumerate(records):
            if r["rule_id"] != family:
                continue
            if r["expected_result"] and i in hit:
                tp += 1
            elif r["expected_result"]:
                fn += 1
            elif i in hit:
                fp += 1
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        per_family[family] = {
            "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
            "recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
        }
    return {
        "labelled_events": len(records),
        "precision_overall": round(tp_all / (tp_all + fp_all), 3),
        "recall_overall": round(tp_all / (tp_all + fn_all), 3),
        "families": per_family,
    }


def mix_batch(n: int) -> pa.RecordBatch:
    """Audit background (system list/watch/leases/node status, app users) + container app logs."""
    seeds = [
        {
            "verb": "watch",
            "user": {"username": "system:kube-scheduler"},
            "objectRef": {"resource": "pods"},
            "sourceIPs": ["10.0.0.10"],
            "responseStatus": {"code": 200},
        },
        {
            "verb": "update",
            "user": {"username": "system:kube-controller-manager"},
            "sourceIPs": ["10.0.0.10"],
            "objectRef": {
                "resource": "leases",
                "namespace": "kube-system",
                "apiGroup": "coordination.k8s.io",
            },
        },
        {
            "verb": "patch",
            "user": {"username": "system:node:node-1"},
            "sourceIPs": ["10.0.0.11"],
            "objectRef": {"resource": "nodes", "subresource": "status", "name": "node-1"},
        },
        {
            "verb": "create",
            "user": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "objectRef": {"resource": "pods", "namespace": "shop"},
            "sourceIPs": ["10.0.0.10"],
            "requestObject": {"spec": {"containers": [{"name": "web", "image": "registry.k8s.io/web:1.2"}]}},
        },
        {
            "verb": "get",
            "user": {"username": "alice@example.com"},
            "sourceIPs": ["10.0.5.3"],
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "cfg"},
            "responseStatus": {"code": 200},
        },
    ]
    audit = [dict(batch_of([s]).to_pylist()[0]) for s in seeds]
    logs = [
        container_row(m)
        for m in ("GET /api/orders 200 12ms", "worker 3 processed job 81723", "cache miss key=u:77")
    ]
    base = from_pylist(audit + logs)
    idx = np.arange(n) % base.num_rows
    out = base.take(pa.array(idx))
    ids = pa.array([f"e{i}" for i in range(n)])
    return out.set_column(out.schema.get_field_index("event.id"), out.schema.field("event.id"), ids)


def throughput(n: int, batch_rows: int) -> dict[str, object]:
    rules = load_rules([REPO / "rules", SHARED / "sigma-kubernetes-audit"])
    batch = mix_batch(batch_rows)
    out: dict[str, object] = {"rules_enabled": len(rules.rules), "rule_errors": len(rules.errors)}
    for mode in ("union", "project"):
        engine = Engine(rules, mode=mode)
        engine.evaluate(batch)  # warm up
        start = time.perf_counter()
        done = 0
        while done < n:
            engine.evaluate(batch)
            done += batch.num_rows
        out[f"stream_{mode}_events_per_s"] = round(done / (time.perf_counter() - start))
        engine.close()
    return out


def retro_hunt(n: int) -> dict[str, object]:
    rules = load_rules([REPO / "rules", SHARED / "sigma-kubernetes-audit"])
    with tempfile.TemporaryDirectory() as tmp:
        batch = mix_batch(1_000_000)
        table = pa.Table.from_batches([batch])
        parts = max(1, n // table.num_rows)
        for i in range(parts):
            pq.write_table(table, f"{tmp}/seg{i}.parquet", row_group_size=200_000)
        con = duckdb.connect()
        con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{tmp}/*.parquet')")
        start = time.perf_counter()
        result = hunt(con, "logs", rules)
        secs = time.perf_counter() - start
    return {
        "hunt_events": parts * table.num_rows,
        "hunt_secs": round(secs, 2),
        "hunt_alerts": len(result.alerts),
        "hunt_rule_errors": len(result.errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report: dict[str, object] = {"mode": "quick" if args.quick else "full"}
    report.update(precision_recall())
    report.update(throughput(400_000 if args.quick else 2_000_000, 100_000))
    report.update(retro_hunt(1_000_000 if args.quick else 10_000_000))
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
