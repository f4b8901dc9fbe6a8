"""Detection benchmark: pack precision/recall on labelled events, streaming throughput, retro-hunt.

    .venv/bin/python benchmarks/detect.py [--quick]

Prints one JSON object. Families map Panther's labelled Kubernetes rules (../shared/data) to the pack
rules that cover the same behaviour; an event counts as detected when any rule of the family fires.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.detect.config import DetectConfig
from kubetrail.detect.detector import Detector
from kubetrail.detect.engine import Engine
from kubetrail.detect.hunt import hunt
from kubetrail.detect.rules import load_rules
from kubetrail.formats.audit import events_to_batch
from kubetrail.formats.dispatch import FormatsConfig, Parsing
from kubetrail.simulate import SimulationOptions, simulate_batch

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
    "Kubernetes.Pod.Privileged.Created": ["k8s_privileged_pod", "k8s_pod_run_as_root"],
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


def simulated(root: Path, hours: float) -> pa.Table:
    """The simulator's cluster (audit + container + node logs), parsed by the real parsers."""
    if not (root / "truth.jsonl").exists():
        simulate_batch(str(root), SimulationOptions(nodes=3, hours=hours, seed=1))
    parsing = Parsing(FormatsConfig())
    now = datetime.now(UTC)
    batches = []
    for node_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = [(f, "container") for f in node_dir.glob("var/log/pods/*/*/*.log*")]
        files += [(f, "audit") for f in node_dir.glob("var/log/kubernetes/audit/*.log*")]
        for path, source in files:
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            st = path.stat()
            origin = Origin(
                node=node_dir.name,
                source=source,
                path=str(path),
                file=FileIdentity(st.st_dev, st.st_ino, "x"),
            )
            batch = parsing.parse(Chunk(origin, data), now)
            if batch.num_rows:
                batches.append(batch)
    batches.append(parsing.flush(now, force=True))
    return pa.Table.from_batches([b for b in batches if b.num_rows]).combine_chunks()


def demo(root: Path, table: pa.Table) -> dict[str, object]:
    """Every simulated attack detected? Any alert on background noise?"""
    det = Detector(DetectConfig(rules=[str(REPO / "rules")], suppress_secs=0))
    det.sinks = []
    alerts = []
    for batch in table.to_batches(max_chunksize=50_000):
        alerts += det.process(batch)[1]
    det.close()
    truth = [json.loads(line) for line in (root / "truth.jsonl").read_text().splitlines() if line.strip()]
    evidence: dict[str, str] = {}
    for attack in truth:
        for audit_id in attack.get("audit_ids") or []:
            evidence[audit_id] = attack["id"]
        for seq in attack.get("seq_ids") or []:
            evidence[seq] = attack["id"]
    streams = {s + ":": a["id"] for a in truth for s in a.get("streams") or []}
    keys = pc.coalesce(
        table.column("kubernetes.audit.auditID").combine_chunks(),
        pc.extract_regex(table.column("message").combine_chunks(), r"kt_seq=(?P<s>\S+)").field("s"),
    ).to_pylist()
    by_event = dict(zip(table.column("event.id").to_pylist(), keys, strict=True))
    detected: dict[str, set[str]] = {a["id"]: set() for a in truth}
    noise = 0
    for alert in alerts:
        hit = set()
        for event_id in alert.event_ids:
            key = by_event.get(event_id) or ""
            if key in evidence:
                hit.add(evidence[key])
            hit |= {a for prefix, a in streams.items() if key.startswith(prefix)}
        for attack_id in hit:
            detected[attack_id].add(alert.rule_title)
        noise += not hit
    return {
        "simulated_events": table.num_rows,
        "attacks": len(truth),
        "attacks_detected": sum(bool(v) for v in detected.values()),
        "attacks_missed": [a for a, v in detected.items() if not v],
        "noise_alerts": noise,
    }


def throughput(table: pa.Table, n: int, batch_rows: int) -> dict[str, object]:
    rules = load_rules([REPO / "rules", SHARED / "sigma-kubernetes-audit"])
    out: dict[str, object] = {"rules_enabled": len(rules.rules), "rule_errors": len(rules.errors)}
    batches = table.to_batches(max_chunksize=batch_rows)
    for mode in ("union", "project"):
        engine = Engine(rules, mode=mode)
        engine.evaluate(batches[0])  # plan once
        start, cpu = time.perf_counter(), time.process_time()
        done = 0
        while done < n:
            for batch in batches:
                engine.evaluate(batch)
                done += batch.num_rows
                if done >= n:
                    break
        out[f"stream_{mode}_events_per_s"] = round(done / (time.perf_counter() - start))
        out[f"stream_{mode}_events_per_cpu_s"] = round(done / (time.process_time() - cpu))
        engine.close()
    return out


def retro_hunt(table: pa.Table, n: int) -> dict[str, object]:
    rules = load_rules([REPO / "rules", SHARED / "sigma-kubernetes-audit"])
    with tempfile.TemporaryDirectory() as tmp:
        written = 0
        part = 0
        while written < n:
            chunk = table.slice(0, min(table.num_rows, n - written))
            pq.write_table(chunk, f"{tmp}/seg{part}.parquet", row_group_size=122_880)
            written += chunk.num_rows
            part += 1
        con = duckdb.connect()
        con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{tmp}/*.parquet')")
        start, cpu = time.perf_counter(), time.process_time()
        result = hunt(con, "logs", rules)
        secs, cpu = time.perf_counter() - start, time.process_time() - cpu
        con.close()
    return {
        "hunt_events": written,
        "hunt_secs": round(secs, 2),
        "hunt_cpu_secs": round(cpu, 2),
        "hunt_events_per_s": round(written / secs),
        "hunt_alerts": len(result.alerts),
        "hunt_rule_errors": len(result.errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report: dict[str, object] = {"mode": "quick" if args.quick else "full"}
    report.update(precision_recall())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cluster"
        table = simulated(root, 0.1 if args.quick else 0.25)
        report.update(demo(root, table))
    report.update(throughput(table, 300_000 if args.quick else 2_000_000, 100_000))
    report.update(retro_hunt(table, 1_000_000 if args.quick else 10_000_000))
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    report["load_average_1m"] = round(os.getloadavg()[0], 1)
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
