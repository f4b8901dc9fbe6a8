"""Scripted attack scenarios at known times, and their ground truth.

Each scenario (``attacks_api`` for API-level attacks seen in the audit log, ``attacks_workload`` for
those that also show in container or control-plane logs) adds audit events and container lines tagged
with its id through a ``Planner``; after the simulator has numbered every line, the tags become the
evidence (``auditIDs`` and sequence ids) in ``truth.jsonl``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kubetrail.simulate.audit import AuditRecord, make_event
from kubetrail.simulate.cluster import Cluster, Node, new_uid
from kubetrail.simulate.timefmt import micro_time

__all__ = ["ATTACKS", "Attack", "AttackPlan", "Injection", "Planner", "plan_attacks"]

BOB = {"username": "bob@example.com", "groups": ["dev-team", "system:authenticated"]}
BOB_IP = "10.20.30.41"
BOB_USER = "bob@example.com"
C2 = "203.0.113.66"

# id -> (name, description, ATT&CK technique, technique name, layers that show it)
ATTACKS: dict[str, tuple[str, str, str, str, list[str]]] = {
    "A01": (
        "pod-exec",
        "interactive shell in a pod via kubectl exec (create and get verbs)",
        "T1609",
        "Container Administration Command",
        ["audit"],
    ),
    "A02": (
        "pod-attach",
        "kubectl attach to a running container (create and get verbs)",
        "T1609",
        "Container Administration Command",
        ["audit"],
    ),
    "A03": (
        "secret-enumeration",
        "list secrets cluster-wide, then read secrets in many namespaces",
        "T1552.007",
        "Unsecured Credentials: Container API",
        ["audit"],
    ),
    "A04": (
        "privileged-hostpath-pod",
        "pod with privileged, hostPID, hostNetwork and hostPath / mounted",
        "T1611",
        "Escape to Host",
        ["audit"],
    ),
    "A05": (
        "cluster-admin-binding",
        "service account created and bound to cluster-admin",
        "T1098",
        "Account Manipulation",
        ["audit"],
    ),
    "A06": (
        "anonymous-access",
        "system:anonymous allowed to read cluster resources",
        "T1078.001",
        "Valid Accounts: Default Accounts",
        ["audit"],
    ),
    "A07": (
        "stolen-sa-token",
        "the shop/cart service-account token used from a public IP",
        "T1528",
        "Steal Application Access Token",
        ["audit"],
    ),
    "A08": (
        "crypto-miner",
        "deployment running xmrig; container prints pool and share lines",
        "T1496",
        "Resource Hijacking",
        ["audit", "container"],
    ),
    "A09": (
        "malicious-cronjob",
        "CronJob in kube-system downloading and running a script",
        "T1053.007",
        "Scheduled Task/Job: Container Orchestration Job",
        ["audit"],
    ),
    "A10": (
        "malicious-daemonset",
        "privileged DaemonSet with host network from an unknown registry",
        "T1610",
        "Deploy Container",
        ["audit"],
    ),
    "A11": (
        "auth-failure-burst",
        "40 requests failing with 401/403 from one address within 20 s",
        "T1110",
        "Brute Force",
        ["audit", "controlplane"],
    ),
    "A12": (
        "kube-system-tampering",
        "patch of the coredns deployment and configmap in kube-system",
        "T1562.001",
        "Impair Defenses: Disable or Modify Tools",
        ["audit"],
    ),
    "A13": (
        "event-deletion",
        "delete and deletecollection on events",
        "T1070",
        "Indicator Removal",
        ["audit"],
    ),
    "A14": (
        "reverse-shell",
        "command injection starting bash -i >& /dev/tcp in an application container",
        "T1059.004",
        "Command and Scripting Interpreter: Unix Shell",
        ["container"],
    ),
}
# When each attack starts, as a fraction of the run (A14 at 0.9).
_FRACTIONS = (0.08, 0.14, 0.2, 0.27, 0.33, 0.4, 0.47, 0.54, 0.61, 0.68, 0.75, 0.82, 0.88)


@dataclass
class Injection:
    """A line an attack puts into a container stream."""

    ts_ns: int
    msg: str
    stderr: bool
    json: bool
    tag: str


@dataclass
class Attack:
    id: str
    name: str
    description: str
    time: str
    node: str
    namespace: str
    pod: str
    user: str
    source_ip: str
    technique: str
    technique_name: str
    layers: list[str]
    audit_ids: list[str] = field(default_factory=list)
    seq_ids: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)  # streams whose every line is evidence (miner output)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AttackPlan:
    attacks: list[Attack]
    audit: list[AuditRecord]
    container_lines: dict[str, list[Injection]]


class Planner:
    """What a scenario needs: the cluster, the generator, the attack times, and ways to add evidence."""

    def __init__(self, cluster: Cluster, t0: int, t1: int, rng: np.random.Generator) -> None:
        self.cluster = cluster
        self.rng = rng
        self.t0 = t0
        self.span = t1 - t0
        self.at = [t0 + int(f * self.span) for f in _FRACTIONS]
        self.plan = AttackPlan([], [], {})
        self.shared: dict[str, str] = {}  # names one scenario leaves for a later one

    @property
    def workers(self) -> list[Node]:
        return self.cluster.workers

    def attack(
        self,
        aid: str,
        t: int,
        *,
        node: str = "",
        ns: str = "",
        pod: str = "",
        user: str = BOB_USER,
        ip: str = BOB_IP,
    ) -> Attack:
        name, desc, technique, tname, layers = ATTACKS[aid]
        a = Attack(aid, name, desc, micro_time(t), node, ns, pod, user, ip, technique, tname, list(layers))
        self.plan.attacks.append(a)
        return a

    def ev(self, tag: str, **kw: Any) -> AuditRecord:
        """An audit event with a fresh auditID, tagged as evidence of ``tag``."""
        rec = make_event(audit_id=new_uid(self.rng), **kw)
        rec.tag = tag
        self.plan.audit.append(rec)
        return rec

    def add(self, rec: AuditRecord, tag: str) -> None:
        rec.tag = tag
        self.plan.audit.append(rec)

    def line(self, stream: str, t: int, msg: str, tag: str, stderr: bool = False, json: bool = False) -> None:
        self.plan.container_lines.setdefault(stream, []).append(Injection(t, msg, stderr, json, tag))


def plan_attacks(cluster: Cluster, t0: int, t1: int, rng: np.random.Generator) -> AttackPlan:
    """Run every scenario in id order; they may add containers to ``cluster`` (the miner pod)."""
    from kubetrail.simulate import attacks_api, attacks_workload

    scenarios: list[Callable[[Planner], None]] = [*attacks_api.SCENARIOS, *attacks_workload.SCENARIOS]
    planner = Planner(cluster, t0, t1, rng)
    for scenario in sorted(scenarios, key=lambda s: s.__name__):
        scenario(planner)
    return planner.plan
