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

__all__ = [
    "CONTROL_PLANE_CONTAINERS",
    "SYSLOG_FILE_NAMES",
    "PodPath",
    "dataset_for",
    "node_file_format",
    "parse_pod_path",
]

_PODS = re.compile(
    r"(?:^|/)pods/(?P<ns>[^/_]+)_(?P<pod>[^/_]+)_(?P<uid>[^/_]+)/(?P<container>[^/]+)/"
    r"(?P<restart>\d+)\.log(?:\.[^/]+)?$"
)
_CONTAINERS = re.compile(
    r"(?:^|/)containers/(?P<pod>[^/_]+)_(?P<ns>[^/_]+)_(?P<container>[^/]+)-(?P<cid>[0-9a-f]{64})\.log$"
)
# Files syslog daemons write (Debian/Ubuntu and RHEL names), also rotated: syslog.1, messages-20260101
SYSLOG_FILE_NAMES = ("syslog", "messages", "kern.log", "auth.log", "daemon.log", "user.log", "secure", "cron")
_SYSLOG_FILE = re.compile(
    r"(?:^|/)(?:" + "|".join(re.escape(n) for n in SYSLOG_FILE_NAMES) + r")(?:[.-][\w.-]*)?$"
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


@lru_cache(maxsize=4096)
def node_file_format(path: str | None) -> str:
    """Parser of a plain node file (agent source ``file``): ``syslog`` for the files syslog daemons
    write (``/var/log/syslog``, ``/var/log/messages``, ...), else ``nodelog`` (klog / logfmt / JSON /
    plain text sniffed per line: kubelet.log, kube-proxy.log, containerd.log, ...)."""
    return "syslog" if path and _SYSLOG_FILE.search(path) else "nodelog"
