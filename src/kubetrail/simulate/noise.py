"""Control-plane background noise in the audit log: controllers' list/watch, node leases and status,
scheduler bindings, health checks, a human reading, a CD tool patching, apps reading their config.
Nothing here resembles the scripted attacks (the tests check that).

Each actor picks its random parameters; an event with the same parameters is serialized once into an
``AuditTemplate`` and afterwards only the audit id, timestamps and sequence id are filled in.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.simulate.arrowtext import join
from kubetrail.simulate.audit import AuditRecord, AuditTemplate, allow, make_event, sa_user
from kubetrail.simulate.cluster import Cluster
from kubetrail.simulate.timefmt import NS

__all__ = ["NoiseEvents", "audit_ids", "background_events"]

_KCM_UA = "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/{}"
_KUBELET_UA = "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46"
_KUBECTL_UA = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
_NODE_GROUPS = ["system:nodes", "system:authenticated"]
_NODE_ALLOW = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
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
_CONTROLLERS = (
    "replicaset-controller",
    "deployment-controller",
    "endpointslice-controller",
    "generic-garbage-collector",
)
_APP_NS = ("shop", "payments")
_DEPLOYMENTS = ("cart", "orders", "catalog", "payments-api")

Actor = Callable[[int, random.Random], int]


def background_events(
    cluster: Cluster, t0: int, t1: int, rate_per_s: float, rng: np.random.Generator
) -> NoiseEvents:
    """Noise at ``rate_per_s`` events per second between ``t0`` and ``t1`` (epoch ns), in time order."""
    n = int(rng.poisson(rate_per_s * (t1 - t0) / NS))
    times = np.sort(rng.integers(t0, t1, n))
    cp = cluster.control_plane
    nodes = cluster.nodes
    pods = [c for c in cluster.containers if not c.static and c.start_at == 0]
    carts = [c for c in pods if c.namespace == "shop" and c.name == "cart"] or pods
    app_pods = [c for c in pods if c.namespace != "kube-system"] or pods
    cache: dict[tuple[Any, ...], int] = {}
    templates: list[AuditTemplate] = []
    latency = np.full(n, 3_000_000, dtype=np.int64)
    extras: list[str] = [""] * n
    row = [0]  # index of the event being generated

    def record(
        key: tuple[Any, ...],
        build: Callable[[], AuditRecord],
        t: int,
        r: random.Random,
        latency_ns: int = 3_000_000,
        extra: str = "",
    ) -> int:
        tpl = cache.get(key)
        if tpl is None:
            tpl = cache[key] = len(templates)
            templates.append(AuditTemplate.of(build()))
        if latency_ns != 3_000_000:
            latency[row[0]] = latency_ns
        if extra:
            extras[row[0]] = extra
        return tpl

    def ev(**kw: Any) -> Callable[[], AuditRecord]:
        return lambda: make_event(ts_ns=0, audit_id="", **kw)

    def pick(r: random.Random, seq: Any) -> Any:
        return seq[int(r.random() * len(seq))]

    def lease(t: int, r: random.Random) -> int:
        node = pick(r, nodes)
        user = {"username": f"system:node:{node.name}", "groups": _NODE_GROUPS}
        return record(
            ("lease", node.index),
            ev(
                verb="update",
                resource="leases",
                group="coordination.k8s.io",
                namespace="kube-node-lease",
                name=node.name,
                user=user,
                source_ips=[node.ip],
                user_agent=_KUBELET_UA,
                annotations=_NODE_ALLOW,
            ),
            t,
            r,
        )

    def node_status(t: int, r: random.Random) -> int:
        node = pick(r, nodes)
        body = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                    }
                ]
            }
        }
        return record(
            ("status", node.index),
            ev(
                verb="patch",
                resource="nodes",
                name=node.name,
                subresource="status",
                user={"username": f"system:node:{node.name}", "groups": _NODE_GROUPS},
                source_ips=[node.ip],
                user_agent=_KUBELET_UA,
                request_object=body,
                annotations=_NODE_ALLOW,
            ),
            t,
            r,
        )

    def node_reads(t: int, r: random.Random) -> int:
        c = pick(r, pods)
        res = pick(r, ("configmaps", "secrets", "pods"))
        name = {"configmaps": "kube-root-ca.crt", "secrets": f"{c.pod.rsplit('-', 2)[0]}-tls", "pods": c.pod}[
            res
        ]
        return record(
            ("node-get", c.stream, res),
            ev(
                verb="get",
                resource=res,
                namespace=c.namespace,
                name=name,
                user={"username": f"system:node:{c.node.name}", "groups": _NODE_GROUPS},
                source_ips=[c.node.ip],
                user_agent=_KUBELET_UA,
                annotations=_NODE_ALLOW,
            ),
            t,
            r,
        )

    def controller(t: int, r: random.Random) -> int:
        res, group, ver = pick(r, _WATCHED)
        # informers list once and then watch; secrets are only ever watched here, so a "list secrets"
        # in the log is never background noise
        verb = "watch" if res == "secrets" else pick(r, ("list", "watch", "watch"))
        sa = pick(r, _CONTROLLERS)
        stage = "ResponseStarted" if verb == "watch" and r.random() < 0.5 else "ResponseComplete"
        latency = int(r.random() * 400 + 1) * NS if verb == "watch" else 2_000_000
        user = {"username": "system:kube-controller-manager", "groups": ["system:authenticated"]}
        return record(
            ("kcm", res, verb, sa, stage),
            ev(
                verb=verb,
                resource=res,
                group=group,
                version=ver,
                user=user,
                source_ips=[cp.ip],
                user_agent=_KCM_UA.format("shared-informers" if verb == "watch" else sa),
                stage=stage,
                annotations=allow(
                    "ClusterRoleBinding",
                    "system:kube-controller-manager",
                    "system:kube-controller-manager",
                    'User "system:kube-controller-manager"',
                ),
            ),
            t,
            r,
            latency,
        )

    def leader(t: int, r: random.Random) -> int:
        comp = pick(r, ("kube-scheduler", "kube-controller-manager"))
        return record(
            ("leader", comp),
            ev(
                verb="update",
                resource="leases",
                group="coordination.k8s.io",
                namespace="kube-system",
                name=comp,
                user={"username": f"system:{comp}", "groups": ["system:authenticated"]},
                source_ips=[cp.ip],
                user_agent=f"{comp}/v1.31.2 (linux/amd64) kubernetes/5864a46/leader-election",
                annotations=allow(
                    "ClusterRoleBinding", f"system:{comp}", f"system:{comp}", f'User "system:{comp}"'
                ),
            ),
            t,
            r,
        )

    def scheduler(t: int, r: random.Random) -> int:
        c = pick(r, app_pods)  # no pod creation in kube-system in the noise (a classic detection)
        body = {
            "kind": "Binding",
            "apiVersion": "v1",
            "metadata": {"name": c.pod, "namespace": c.namespace, "uid": c.pod_uid},
            "target": {"kind": "Node", "name": c.node.name},
        }
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        return record(
            ("bind", c.stream),
            ev(
                verb="create",
                resource="pods",
                namespace=c.namespace,
                name=c.pod,
                subresource="binding",
                user={"username": "system:kube-scheduler", "groups": ["system:authenticated"]},
                source_ips=[cp.ip],
                code=201,
                user_agent="kube-scheduler/v1.31.2 (linux/amd64) kubernetes/5864a46/scheduler",
                request_object=body,
                response_object=status,
                annotations=allow(
                    "ClusterRoleBinding",
                    "system:kube-scheduler",
                    "system:kube-scheduler",
                    'User "system:kube-scheduler"',
                ),
            ),
            t,
            r,
        )

    def health(t: int, r: random.Random) -> int:
        path = pick(r, ("/livez", "/readyz", "/healthz"))
        return record(
            ("health", path),
            ev(
                verb="get",
                uri=path,
                user={"username": "system:anonymous", "groups": ["system:unauthenticated"]},
                source_ips=["10.0.0.2"],
                user_agent="kube-probe/1.31",
                annotations=allow(
                    "ClusterRoleBinding",
                    "system:public-info-viewer",
                    "system:public-info-viewer",
                    'Group "system:unauthenticated"',
                ),
            ),
            t,
            r,
            500_000,
        )

    def human(t: int, r: random.Random) -> int:
        c = pick(r, pods)
        ns = c.namespace if c.namespace in _APP_NS else "shop"
        choice = int(r.random() * 4)
        res, group, name, sub, verb = (
            ("pods", "", "", "", "list"),
            ("pods", "", c.pod, "log", "get"),
            ("deployments", "apps", "", "", "list"),
            ("pods", "", c.pod, "", "get"),
        )[choice]
        return record(
            ("human", ns, choice, name),
            ev(
                verb=verb,
                resource=res,
                group=group,
                namespace=ns,
                name=name,
                subresource=sub,
                user={"username": "alice@example.com", "groups": ["dev-team", "system:authenticated"]},
                source_ips=["10.20.30.40"],
                user_agent=_KUBECTL_UA,
                annotations=allow("RoleBinding", "dev-team-view", "view", 'Group "dev-team"'),
            ),
            t,
            r,
        )

    def argocd(t: int, r: random.Random) -> int:
        ns, dep = pick(r, _APP_NS), pick(r, _DEPLOYMENTS)
        body = {
            "metadata": {
                "annotations": {"argocd.argoproj.io/tracking-id": f"{dep}:apps/Deployment:{ns}/{dep}"}
            }
        }
        return record(
            ("argocd", ns, dep),
            ev(
                verb="patch",
                resource="deployments",
                group="apps",
                namespace=ns,
                name=dep,
                user=sa_user(
                    "argocd", "argocd-application-controller", "5a4d2b1c-0e9f-4d8a-9b7c-6f5e4d3c2b1a"
                ),
                source_ips=["10.244.1.31"],
                user_agent="argocd-application-controller/v2.13.1 (linux/amd64)",
                request_object=body,
                annotations=allow(
                    "ClusterRoleBinding",
                    "argocd-application-controller",
                    "argocd-application-controller",
                    'ServiceAccount "argocd-application-controller/argocd"',
                ),
            ),
            t,
            r,
        )

    def events_create(t: int, r: random.Random) -> int:
        c = pick(r, pods)
        body = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": f"{c.pod}.@@X@@", "namespace": c.namespace},
            "involvedObject": {"kind": "Pod", "namespace": c.namespace, "name": c.pod},
            "reason": "Pulled",
            "message": f'Container image "{c.image}" already present on machine',
            "type": "Normal",
        }
        return record(
            ("event", c.stream),
            ev(
                verb="create",
                resource="events",
                namespace=c.namespace,
                user={"username": f"system:node:{c.node.name}", "groups": _NODE_GROUPS},
                code=201,
                source_ips=[c.node.ip],
                user_agent=_KUBELET_UA,
                request_object=body,
                annotations=_NODE_ALLOW,
            ),
            t,
            r,
            extra=f"{t:x}",
        )

    def sa_app(t: int, r: random.Random) -> int:
        c = pick(r, carts)
        return record(
            ("cart-sa", c.stream),
            ev(
                verb="get",
                resource="configmaps",
                namespace="shop",
                name="cart-config",
                user=sa_user(
                    "shop", "cart", "0b9e6a4c-7d21-4f5e-8a3b-2c1d0e9f8a7b", c.node.name, c.pod, c.pod_uid
                ),
                source_ips=[c.pod_ip],
                user_agent="cart/2.4.1",
                annotations=allow("RoleBinding", "cart", "cart-config-reader", 'ServiceAccount "cart/shop"'),
            ),
            t,
            r,
        )

    def prometheus(t: int, r: random.Random) -> int:
        res = pick(r, ("pods", "endpoints", "services", "nodes"))
        verb = pick(r, ("list", "watch"))
        latency = int(r.random() * 300 + 1) * NS if verb == "watch" else 4_000_000
        return record(
            ("prom", res, verb),
            ev(
                verb=verb,
                resource=res,
                user=sa_user("monitoring", "prometheus", "7c6b5a49-3827-4615-9a0b-1c2d3e4f5a6b"),
                source_ips=["10.244.2.14"],
                user_agent="prometheus/v2.55.1",
                annotations=allow(
                    "ClusterRoleBinding", "prometheus", "prometheus", 'ServiceAccount "prometheus/monitoring"'
                ),
            ),
            t,
            r,
            latency,
        )

    actors: list[tuple[float, Actor]] = [
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
    template = np.empty(n, dtype=np.int64)
    for i, (k, t) in enumerate(zip(which, times.tolist(), strict=True)):
        row[0] = i
        template[i] = actors[k][1](int(t), r)
    return NoiseEvents(times, template, templates, latency, extras, audit_ids(rng, n))


@dataclass
class NoiseEvents:
    """Background events as columns: time (stageTimestamp), template index, latency, ``@@X@@`` value, id."""

    ts: np.ndarray
    template: np.ndarray
    templates: list[AuditTemplate]
    latency: np.ndarray
    extra: list[str]
    audit_id: pa.Array

    def __len__(self) -> int:
        return len(self.ts)


def audit_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` version-4 UUID strings drawn in bulk."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexes = pa.array(np.frombuffer(raw.tobytes().hex().encode(), dtype="S32")).cast(pa.string())
    if isinstance(hexes, pa.ChunkedArray):  # pa.array splits large numpy bytes arrays into chunks
        hexes = hexes.combine_chunks()
    cut = [pc.utf8_slice_codeunits(hexes, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return join(cut[0], "-", cut[1], "-", cut[2], "-", cut[3], "-", cut[4])
