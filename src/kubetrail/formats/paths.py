"""Kubernetes log path conventions -> pod coordinates, computed once per chunk (one path each).

    /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log[.<rotation suffix>[.gz]]
    /var/log/containers/<pod>_<namespace>_<container>-<64 hex container id>.log

Namespace and pod names are DNS labels/subdomains and cannot contain ``_``, so splitting on it is
exact. The directory prefix is not required (hostPath mounts move it, e.g. ``/host/var/log/pods``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["CONTROL_PLANE_CONTAINERS", "PodPath", "dataset_for", "parse_pod_path"]

_PODS = re.compile(
    r"(?:^|/)pods/(?P<ns>[^/_]+)_(?P<pod>[^/_]+)_(?P<uid>[^/_]+)/(?P<container>[^/]+)/"
    r"(?P<restart>\d+)\.log(?:\.[^/]+)?$"
)
_CONTAINERS = re.compile(
    r"(?:^|/)containers/(?P<pod>[^/_]+)_(?P<ns>[^/_]+)_(?P<container>[^/]+)-(?P<cid>[0-9a-f]{64})\.log$"
)
CONTROL_PLANE_CONTAINERS = frozenset(
    {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "cloud-controller-manager"}
)


@dataclass(frozen=True, slots=True)
class PodPath:
    namespace: str
    pod: str
    container: str
    uid: str | None = None
    restart_count: int | None = None
    container_id: str | None = None
    rotated: bool = False

    def columns(self) -> dict[str, str | int | None]:
        """Schema column -> value, for broadcasting over a batch."""
        return {
            "kubernetes.namespace": self.namespace,
            "kubernetes.pod.name": self.pod,
            "kubernetes.pod.uid": self.uid,
            "kubernetes.container.name": self.container,
            "kubernetes.container.restart_count": self.restart_count,
            "container.id": self.container_id,
        }


@lru_cache(maxsize=65536)
def parse_pod_path(path: str | None) -> PodPath | None:
    """Pod coordinates from a container log path, or None when the path follows neither convention."""
    if not path:
        return None
    m = _PODS.search(path)
    if m:
        return PodPath(
            namespace=m["ns"],
            pod=m["pod"],
            container=m["container"],
            uid=m["uid"],
            restart_count=int(m["restart"]),
            rotated=not path.endswith(".log"),
        )
    m = _CONTAINERS.search(path)
    if m:
        return PodPath(namespace=m["ns"], pod=m["pod"], container=m["container"], container_id=m["cid"])
    return None


def dataset_for(pod: PodPath | None, source: str) -> str:
    """``event.dataset``: static control-plane pods in kube-system are ``controlplane``."""
    if pod is not None and pod.namespace == "kube-system" and pod.container in CONTROL_PLANE_CONTAINERS:
        return "controlplane"
    if source in ("container", "docker", "cri"):
        return "container"
    return {"journald": "node", "klog": "node", "file": "node", "controlplane": "controlplane"}.get(
        source, source
    )
