"""API server audit events (``audit.k8s.io/v1`` Event JSON lines) under a realistic audit policy, and the
control-plane background noise: controllers' list/watch, node leases and status, health checks,
humans and CD tools doing ordinary work. Nothing here resembles the scripted attacks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from kubetrail.simulate.cluster import Cluster, uid_from_bits
from kubetrail.simulate.timefmt import NS, micro_time

__all__ = [
    "POLICY_YAML",
    "AuditRecord",
    "background_events",
    "encode_audit",
    "level_for",
    "make_event",
    "sa_user",
]

# The policy the simulated API server runs with (written to the control-plane node for reference).
POLICY_YAML = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: "authentication.k8s.io"
        resources: ["tokenreviews"]
  - level: Metadata
    verbs: ["get", "list", "watch"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods", "pods/exec", "pods/attach", "pods/portforward", "pods/ephemeralcontainers",
                    "pods/binding", "pods/status"]
      - group: "rbac.authorization.k8s.io"
  - level: Metadata
    resources:
      - group: "coordination.k8s.io"
        resources: ["leases"]
  - level: Request
"""

_METADATA_RESOURCES = {"secrets", "configmaps", "serviceaccounts/token", "tokenreviews"}
_READS = {"get", "list", "watch"}


def level_for(verb: str, resource: str, group: str) -> str:
    """The level ``POLICY_YAML`` gives a request.

    ``resource`` may carry a subresource (``pods/exec``); "" means a non-resource URL such as ``/livez``.
    """
    if resource in _METADATA_RESOURCES:
        return "Metadata"
    if verb in _READS or not resource:
        return "Metadata"
    if (group == "" and resource.split("/")[0] == "pods") or group == "rbac.authorization.k8s.io":
        return "RequestResponse"
    if resource == "leases":
        return "Metadata"
    return "Request"


@dataclass
class AuditRecord:
    ts_ns: int  # stageTimestamp: the order events appear in the log
    event: dict[str, Any]
    tag: str = ""  # attack id for evidence events, "" for background


def sa_user(ns: str, name: str, uid: str, node: str = "", pod: str = "", pod_uid: str = "") -> dict[str, Any]:
    user: dict[str, Any] = {
        "username": f"system:serviceaccount:{ns}:{name}",
        "uid": uid,
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
    }
    if node:
        user["extra"] = {
            "authentication.kubernetes.io/credential-id": [f"JTI={uid[::-1]}"],
            "authentication.kubernetes.io/node-name": [node],
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        }
    return user


def _uri(verb: str, resource: str, group: str, version: str, ns: str, name: str, sub: str) -> str:
    base = "/api/v1" if group == "" else f"/apis/{group}/{version}"
    path = base + (f"/namespaces/{ns}" if ns else "") + f"/{resource}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    if verb == "watch":
        path += "?allowWatchBookmarks=true&resourceVersion=0&timeout=7m12s&watch=true"
    elif verb == "list":
        path += "?limit=500&resourceVersion=0"
    return path


def make_event(
    *,
    ts_ns: int,
    audit_id: str,
    verb: str,
    user: dict[str, Any],
    source_ips: list[str],
    user_agent: str,
    resource: str = "",
    group: str = "",
    version: str = "v1",
    namespace: str = "",
    name: str = "",
    subresource: str = "",
    uri: str = "",
    code: int = 200,
    stage: str = "ResponseComplete",
    latency_ns: int = 3_000_000,
    request_object: dict[str, Any] | None = None,
    response_object: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    level: str | None = None,
    fail_message: str = "",
) -> AuditRecord:
    """One Event with the fields in kube-apiserver's order; the bodies kept are the ones ``level`` allows."""
    full_resource = f"{resource}/{subresource}" if subresource else resource
    level = level or level_for(verb, full_resource, group)
    received, stage_ts = micro_time(ts_ns - latency_ns), micro_time(ts_ns)
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": audit_id,
        "stage": stage,
        "requestURI": uri or _uri(verb, resource, group, version, namespace, name, subresource),
        "verb": verb,
        "user": user,
        "sourceIPs": source_ips,
        "userAgent": user_agent,
    }
    if resource:
        ref: dict[str, Any] = {"resource": resource}
        if namespace:
            ref["namespace"] = namespace
        if name:
            ref["name"] = name
        if group:
            ref["apiGroup"] = group
        ref["apiVersion"] = version
        if subresource:
            ref["subresource"] = subresource
        ev["objectRef"] = ref
    if code < 400:
        ev["responseStatus"] = {"metadata": {}, "code": code}
    else:
        reason = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists"}.get(code, "")
        ev["responseStatus"] = {
            "metadata": {},
            "status": "Failure",
            "message": fail_message or reason,
            "reason": reason,
            "code": code,
        }
    if level in ("Request", "RequestResponse") and request_object is not None:
        ev["requestObject"] = request_object
    if level == "RequestResponse" and response_object is not None:
        ev["responseObject"] = response_object
    ev["requestReceivedTimestamp"] = received
    ev["stageTimestamp"] = stage_ts
    ev["annotations"] = dict(annotations or {})
    return AuditRecord(ts_ns, ev)


def allow(kind: str, binding: str, role: str, subject: str) -> dict[str, str]:
    return {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": (
            f'RBAC: allowed by {kind} "{binding}" of ClusterRole "{role}" to {subject}'
        ),
    }


_KCM_UA = "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/{}"
_KUBELET_UA = "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46"
_KUBECTL_UA = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
_NODE_GROUPS = ["system:nodes", "system:authenticated"]
_WATCHED = (
    ("pods", "", "v1"),
    ("secrets", "", "v1"),
    ("configmaps", "", "v1"),
    ("nodes", "", "v1"),
    ("deployments", "apps", "v1"),
    ("replicasets", "apps", "v1"),
    ("endpointslices", "discovery.k8s.io", "v1"),
    ("services", "", "v1"),
    ("serviceaccounts", "", "v1"),
    ("jobs", "batch", "v1"),
)
_APP_NS = ("shop", "payments", "monitoring")


def background_events(
    cluster: Cluster, t0: int, t1: int, rate_per_s: float, rng: np.random.Generator
) -> list[AuditRecord]:
    """Control-plane noise at ``rate_per_s`` events per second between ``t0`` and ``t1`` (epoch ns)."""
    n = int(rng.poisson(rate_per_s * (t1 - t0) / NS))
    times = np.sort(rng.integers(t0, t1, n))
    actors: list[tuple[float, Callable[[int, random.Random], AuditRecord]]] = []
    cp = cluster.control_plane
    api_ip = cp.ip
    pods = [c for c in cluster.containers if not c.static]

    def ids(r: random.Random) -> str:
        return uid_from_bits(r.getrandbits(128))

    def lease(t: int, r: random.Random) -> AuditRecord:
        node = cluster.nodes[r.randrange(0, len(cluster.nodes))]
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="update",
            resource="leases",
            group="coordination.k8s.io",
            namespace="kube-node-lease",
            name=node.name,
            user={"username": f"system:node:{node.name}", "groups": _NODE_GROUPS},
            source_ips=[node.ip],
            user_agent=_KUBELET_UA,
            annotations=allow(
                "ClusterRoleBinding", "system:node", "system:node", f'User "system:node:{node.name}"'
            )
            | {"authorization.k8s.io/reason": ""},
        )

    def node_status(t: int, r: random.Random) -> AuditRecord:
        node = cluster.nodes[r.randrange(0, len(cluster.nodes))]
        body = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastHeartbeatTime": "2026-01-01T12:00:00Z",
                    }
                ]
            }
        }
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="patch",
            resource="nodes",
            name=node.name,
            subresource="status",
            user={"username": f"system:node:{node.name}", "groups": _NODE_GROUPS},
            source_ips=[node.ip],
            user_agent=_KUBELET_UA,
            request_object=body,
            annotations={"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
        )

    def node_reads(t: int, r: random.Random) -> AuditRecord:
        c = pods[r.randrange(0, len(pods))]
        res = ("configmaps", "secrets", "pods")[r.randrange(0, 3)]
        name = (
            "kube-root-ca.crt"
            if res == "configmaps"
            else (f"{c.pod.rsplit('-', 2)[0]}-tls" if res == "secrets" else c.pod)
        )
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="get",
            resource=res,
            namespace=c.namespace,
            name=name,
            user={"username": f"system:node:{c.node.name}", "groups": _NODE_GROUPS},
            source_ips=[c.node.ip],
            user_agent=_KUBELET_UA,
            annotations={"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
        )

    def controller(t: int, r: random.Random) -> AuditRecord:
        res, group, ver = _WATCHED[r.randrange(0, len(_WATCHED))]
        verb = ("list", "watch", "watch")[r.randrange(0, 3)]
        sa = (
            "replicaset-controller",
            "deployment-controller",
            "endpointslice-controller",
            "generic-garbage-collector",
        )[r.randrange(0, 4)]
        user = {"username": "system:kube-controller-manager", "groups": ["system:authenticated"]}
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb=verb,
            resource=res,
            group=group,
            version=ver,
            user=user,
            source_ips=[api_ip],
            user_agent=_KCM_UA.format("shared-informers" if verb == "watch" else sa),
            stage="ResponseStarted" if verb == "watch" and r.random() < 0.5 else "ResponseComplete",
            latency_ns=r.randrange(1, 400) * NS if verb == "watch" else 2_000_000,
            annotations=allow(
                "ClusterRoleBinding",
                "system:kube-controller-manager",
                "system:kube-controller-manager",
                'User "system:kube-controller-manager"',
            ),
        )

    def leader(t: int, r: random.Random) -> AuditRecord:
        comp = ("kube-scheduler", "kube-controller-manager")[r.randrange(0, 2)]
        user = {"username": f"system:{comp}", "groups": ["system:authenticated"]}
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="update",
            resource="leases",
            group="coordination.k8s.io",
            namespace="kube-system",
            name=comp,
            user=user,
            source_ips=[api_ip],
            user_agent=f"{comp}/v1.31.2 (linux/amd64) kubernetes/5864a46/leader-election",
            annotations=allow(
                "ClusterRoleBinding", f"system:{comp}", f"system:{comp}", f'User "system:{comp}"'
            ),
        )

    def scheduler(t: int, r: random.Random) -> AuditRecord:
        c = pods[r.randrange(0, len(pods))]
        user = {"username": "system:kube-scheduler", "groups": ["system:authenticated"]}
        body = {
            "kind": "Binding",
            "apiVersion": "v1",
            "metadata": {"name": c.pod, "namespace": c.namespace, "uid": c.pod_uid},
            "target": {"kind": "Node", "name": c.node.name},
        }
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="create",
            resource="pods",
            namespace=c.namespace,
            name=c.pod,
            subresource="binding",
            user=user,
            source_ips=[api_ip],
            code=201,
            user_agent="kube-scheduler/v1.31.2 (linux/amd64) kubernetes/5864a46/scheduler",
            request_object=body,
            response_object={
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            annotations=allow(
                "ClusterRoleBinding",
                "system:kube-scheduler",
                "system:kube-scheduler",
                'User "system:kube-scheduler"',
            ),
        )

    def health(t: int, r: random.Random) -> AuditRecord:
        path = ("/livez", "/readyz", "/healthz")[r.randrange(0, 3)]
        user = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="get",
            uri=path,
            user=user,
            source_ips=["10.0.0.2"],
            user_agent="kube-probe/1.31",
            latency_ns=500_000,
            annotations=allow(
                "ClusterRoleBinding",
                "system:public-info-viewer",
                "system:public-info-viewer",
                'Group "system:unauthenticated"',
            ),
        )

    def human(t: int, r: random.Random) -> AuditRecord:
        c = pods[r.randrange(0, len(pods))]
        ns = c.namespace if c.namespace in _APP_NS else "shop"
        choice = r.randrange(0, 4)
        res, group, name, sub, verb = [
            ("pods", "", "", "", "list"),
            ("pods", "", c.pod, "log", "get"),
            ("deployments", "apps", "", "", "list"),
            ("pods", "", c.pod, "", "get"),
        ][choice]
        user = {"username": "alice@example.com", "groups": ["dev-team", "system:authenticated"]}
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb=verb,
            resource=res,
            group=group,
            namespace=ns,
            name=name,
            subresource=sub,
            user=user,
            source_ips=["10.20.30.40"],
            user_agent=_KUBECTL_UA,
            annotations=allow("RoleBinding", "dev-team-view", "view", 'Group "dev-team"'),
        )

    def argocd(t: int, r: random.Random) -> AuditRecord:
        ns = _APP_NS[r.randrange(0, 2)]
        dep = ("cart", "orders", "catalog", "payments-api")[r.randrange(0, 4)]
        user = sa_user("argocd", "argocd-application-controller", "5a4d2b1c-0e9f-4d8a-9b7c-6f5e4d3c2b1a")
        body = {
            "metadata": {
                "annotations": {"argocd.argoproj.io/tracking-id": f"{dep}:apps/Deployment:{ns}/{dep}"}
            }
        }
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="patch",
            resource="deployments",
            group="apps",
            namespace=ns,
            name=dep,
            user=user,
            source_ips=["10.244.1.31"],
            user_agent="argocd-application-controller/v2.13.1 (linux/amd64)",
            request_object=body,
            annotations=allow(
                "ClusterRoleBinding",
                "argocd-application-controller",
                "argocd-application-controller",
                'ServiceAccount "argocd-application-controller/argocd"',
            ),
        )

    def events_create(t: int, r: random.Random) -> AuditRecord:
        c = pods[r.randrange(0, len(pods))]
        body = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": f"{c.pod}.{t:x}", "namespace": c.namespace},
            "involvedObject": {"kind": "Pod", "namespace": c.namespace, "name": c.pod},
            "reason": "Pulled",
            "message": f'Container image "{c.image}" already present on machine',
            "type": "Normal",
        }
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="create",
            resource="events",
            namespace=c.namespace,
            user={"username": f"system:node:{c.node.name}", "groups": _NODE_GROUPS},
            code=201,
            source_ips=[c.node.ip],
            user_agent=_KUBELET_UA,
            request_object=body,
            annotations={"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
        )

    def sa_app(t: int, r: random.Random) -> AuditRecord:
        fe = [c for c in pods if c.namespace == "shop" and c.name == "cart"] or pods
        c = fe[r.randrange(0, len(fe))]
        user = sa_user("shop", "cart", "0b9e6a4c-7d21-4f5e-8a3b-2c1d0e9f8a7b", c.node.name, c.pod, c.pod_uid)
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb="get",
            resource="configmaps",
            namespace="shop",
            name="cart-config",
            user=user,
            source_ips=[c.pod_ip],
            user_agent="cart/2.4.1",
            annotations=allow("RoleBinding", "cart", "cart-config-reader", 'ServiceAccount "cart/shop"'),
        )

    def prometheus(t: int, r: random.Random) -> AuditRecord:
        res = ("pods", "endpoints", "services", "nodes")[r.randrange(0, 4)]
        verb = ("list", "watch")[r.randrange(0, 2)]
        user = sa_user("monitoring", "prometheus", "7c6b5a49-3827-4615-9a0b-1c2d3e4f5a6b")
        return make_event(
            ts_ns=t,
            audit_id=ids(r),
            verb=verb,
            resource=res,
            user=user,
            source_ips=["10.244.2.14"],
            user_agent="prometheus/v2.55.1",
            latency_ns=r.randrange(1, 300) * NS if verb == "watch" else 4_000_000,
            annotations=allow(
                "ClusterRoleBinding", "prometheus", "prometheus", 'ServiceAccount "prometheus/monitoring"'
            ),
        )

    actors = [
        (20, lease),
        (5, node_status),
        (12, node_reads),
        (18, controller),
        (4, leader),
        (3, scheduler),
        (6, health),
        (5, human),
        (3, argocd),
        (8, events_create),
        (6, sa_app),
        (6, prometheus),
    ]
    weights = np.array([w for w, _ in actors], dtype=float)
    which = rng.choice(len(actors), size=n, p=weights / weights.sum()).tolist()
    # Per-event scalars come from ``random.Random`` (seeded from ``rng``): far cheaper than numpy scalars.
    r = random.Random(int(rng.integers(0, 2**63)))
    return [actors[k][1](int(t), r) for k, t in zip(which, times.tolist(), strict=True)]


def encode_audit(records: list[AuditRecord], stream: str = "audit", first: int = 0) -> list[str]:
    """JSON lines in ``records`` order, each with its ``kubetrail.io/seq`` annotation."""
    out = []
    for i, rec in enumerate(records, start=first):
        rec.event["annotations"]["kubetrail.io/seq"] = f"{stream}:{i}"
        out.append(orjson.dumps(rec.event).decode() + "\n")
    return out
