"""The seeded model of a cluster: nodes, namespaces, pods, containers, uids and container ids.

Only the model; what each container prints is in ``workloads``, where it goes on disk in ``writers``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from kubetrail.simulate.options import SimulationOptions

__all__ = [
    "Cluster",
    "Container",
    "Node",
    "add_attack_container",
    "build_cluster",
    "new_uid",
    "pod_suffix",
    "uid_from_bits",
]

_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand alphabet


@dataclass
class Node:
    index: int
    name: str
    role: str  # "control-plane" | "worker"
    runtime: str  # "containerd" | "docker"
    ip: str
    pod_cidr_prefix: str  # "10.244.<i>"
    boot_id: str
    machine_id: str


@dataclass
class Container:
    stream: str  # sequence stream id, e.g. "n1.c4"
    node: Node
    namespace: str
    pod: str
    pod_uid: str
    name: str
    image: str
    profile: str  # key of workloads.PROFILES
    weight: float  # relative line rate
    ids: list[str]  # container id per restart (64 hex)
    restart_at: float | None = None  # fraction of the run where the first instance dies
    start_at: float = 0.0  # fraction of the run where the container starts (attack pods start late)
    static: bool = False
    pod_ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Cluster:
    name: str
    nodes: list[Node]
    containers: list[Container]

    @property
    def control_plane(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:] or self.nodes[:1]

    def find(self, namespace: str, pod_prefix: str, container: str | None = None) -> Container:
        for c in self.containers:
            if c.namespace == namespace and c.pod.startswith(pod_prefix) and container in (None, c.name):
                return c
        raise KeyError(f"no container {namespace}/{pod_prefix}*/{container}")


def new_uid(rng: np.random.Generator) -> str:
    """A UUID (version 4 layout) from the seeded generator."""
    return uid_from_bits(int.from_bytes(rng.bytes(16), "big"))


def uid_from_bits(bits: int) -> str:
    """A version-4 UUID string from 128 random bits."""
    bits = (bits & ~(0xF << 76) | (0x4 << 76)) & ~(0x3 << 62) | (0x2 << 62)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def pod_suffix(rng: np.random.Generator, n: int) -> str:
    return "".join(_SAFE[i] for i in rng.integers(0, len(_SAFE), n).tolist())


# (namespace, workload, kind, replicas per 2 workers, [(container, profile, image, weight)])
_WORKLOADS: list[tuple[str, str, str, float, list[tuple[str, str, str, float]]]] = [
    ("shop", "frontend", "Deployment", 3, [("nginx", "nginx", "nginx:1.27.2", 3.0)]),
    ("shop", "cart", "Deployment", 2, [("cart", "go", "ghcr.io/example/cart:2.4.1", 1.5)]),
    ("shop", "orders", "Deployment", 2, [("orders", "java", "ghcr.io/example/orders:5.2.0", 1.5)]),
    ("shop", "catalog", "Deployment", 2, [("catalog", "node", "ghcr.io/example/catalog:1.9.3", 1.0)]),
    ("shop", "shop-db", "StatefulSet", 1, [("postgres", "postgres", "postgres:16.4", 0.5)]),
    ("shop", "redis", "StatefulSet", 1, [("redis", "redis", "redis:7.4.1", 0.3)]),
    ("payments", "payments-api", "Deployment", 2, [("api", "python", "ghcr.io/example/payments:3.1.0", 1.5)]),
    ("payments", "ledger", "Deployment", 1, [("ledger", "java", "ghcr.io/example/ledger:1.0.7", 1.0)]),
    (
        "ingress-nginx",
        "ingress-nginx-controller",
        "Deployment",
        1,
        [("controller", "nginx", "registry.k8s.io/ingress-nginx/controller:v1.11.3", 3.0)],
    ),
    ("monitoring", "grafana", "Deployment", 1, [("grafana", "logfmt", "grafana/grafana:11.3.0", 0.6)]),
    (
        "monitoring",
        "prometheus",
        "StatefulSet",
        1,
        [("prometheus", "logfmt", "prom/prometheus:v2.55.1", 0.6)],
    ),
    ("default", "legacy-app", "Deployment", 1, [("app", "plain", "registry.example.com/legacy:0.9", 0.5)]),
    (
        "kube-system",
        "coredns",
        "Deployment",
        2,
        [("coredns", "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", 1.0)],
    ),
]
_DAEMONSETS: list[tuple[str, str, str, str, str, float]] = [
    ("kube-system", "kube-proxy", "kube-proxy", "klog", "registry.k8s.io/kube-proxy:v1.31.2", 0.2),
    ("kube-system", "kindnet", "kindnet-cni", "klog", "docker.io/kindest/kindnetd:v20241023-a345ebe4", 0.3),
    (
        "monitoring",
        "node-exporter",
        "node-exporter",
        "logfmt",
        "quay.io/prometheus/node-exporter:v1.8.2",
        0.1,
    ),
]
_STATIC: list[tuple[str, str, str, float]] = [
    ("etcd", "etcd", "registry.k8s.io/etcd:3.5.15-0", 1.0),
    ("kube-apiserver", "apiserver", "registry.k8s.io/kube-apiserver:v1.31.2", 4.0),
    ("kube-controller-manager", "klog", "registry.k8s.io/kube-controller-manager:v1.31.2", 1.5),
    ("kube-scheduler", "klog", "registry.k8s.io/kube-scheduler:v1.31.2", 0.5),
]


def _node_names(n: int) -> list[str]:
    return ["kt-control-plane"] + [f"kt-worker-{i}" for i in range(1, n)]


def build_cluster(options: SimulationOptions, rng: np.random.Generator) -> Cluster:
    """Place pods on nodes. Deterministic for a given generator state."""
    nodes: list[Node] = []
    names = _node_names(options.nodes)
    docker_from = options.nodes - options.docker_nodes
    for i, name in enumerate(names):
        runtime = "docker" if i >= max(docker_from, 1) else "containerd"
        nodes.append(
            Node(
                i,
                name,
                "control-plane" if i == 0 else "worker",
                runtime,
                f"10.0.0.{10 + i}",
                f"10.244.{i}",
                rng.bytes(16).hex(),
                rng.bytes(16).hex(),
            )
        )
    cluster = Cluster(options.cluster_name, nodes, [])
    per_node: dict[int, int] = {}
    pod_ips: dict[int, int] = {}

    def add(
        node: Node,
        ns: str,
        pod: str,
        uid: str,
        cname: str,
        profile: str,
        image: str,
        weight: float,
        static: bool = False,
    ) -> Container:
        k = per_node.get(node.index, 0)
        per_node[node.index] = k + 1
        restart_at = None
        if not static and rng.random() < options.restart_prob:
            restart_at = float(rng.uniform(0.2, 0.8))
        ids = [rng.bytes(32).hex() for _ in range(2 if restart_at is not None else 1)]
        if static:
            pod_ip = node.ip
        else:
            pod_ips[node.index] = pod_ips.get(node.index, 1) + 1
            pod_ip = f"{node.pod_cidr_prefix}.{pod_ips[node.index]}"
        c = Container(
            f"n{node.index}.c{k}",
            node,
            ns,
            pod,
            uid,
            cname,
            image,
            profile,
            weight,
            ids,
            restart_at=restart_at,
            static=static,
            pod_ip=pod_ip,
        )
        cluster.containers.append(c)
        return c

    cp = nodes[0]
    for comp, profile, image, weight in _STATIC:
        # static pods' uid is the hash of their manifest (32 hex, no dashes)
        uid = hashlib.md5(f"{cp.name}/{comp}".encode(), usedforsecurity=False).hexdigest()
        add(cp, "kube-system", f"{comp}-{cp.name}", uid, comp, profile, image, weight, static=True)
    for ns, ds, cname, profile, image, weight in _DAEMONSETS:
        for node in nodes:
            add(node, ns, f"{ds}-{pod_suffix(rng, 5)}", new_uid(rng), cname, profile, image, weight)
    workers = cluster.workers
    scale = max(1.0, len(workers) / 2)
    for ns, name, kind, replicas, containers in _WORKLOADS:
        count = max(1, round(replicas * scale)) if kind == "Deployment" else int(replicas)
        rs_hash = pod_suffix(rng, 10)
        for r in range(count):
            node = workers[int(rng.integers(0, len(workers)))]
            pod = f"{name}-{rs_hash}-{pod_suffix(rng, 5)}" if kind == "Deployment" else f"{name}-{r}"
            uid = new_uid(rng)
            for cname, profile, image, weight in containers:
                add(node, ns, pod, uid, cname, profile, image, weight)
    return cluster


def add_attack_container(
    cluster: Cluster,
    rng: np.random.Generator,
    node: Node,
    ns: str,
    pod: str,
    cname: str,
    profile: str,
    image: str,
    weight: float,
    start_at: float,
) -> Container:
    """A container that starts mid-run (crypto-miner, attacker pod)."""
    k = 1 + max((int(c.stream.rsplit(".c", 1)[1]) for c in cluster.containers if c.node is node), default=-1)
    c = Container(
        f"n{node.index}.c{k}",
        node,
        ns,
        pod,
        new_uid(rng),
        cname,
        image,
        profile,
        weight,
        [rng.bytes(32).hex()],
        start_at=start_at,
        pod_ip=f"{node.pod_cidr_prefix}.{200 + k}",
    )
    cluster.containers.append(c)
    return c
