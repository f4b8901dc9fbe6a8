"""Kubernetes metadata for this node's pods, from a list + watch of the API (lightkube, async).

* Only this node's pods are watched (``fieldSelector=spec.nodeName=<node>``), plus namespaces (labels,
  exclude annotations) and this node's labels. List, then watch from the list's ``resourceVersion``
  (bookmarks requested); a ``410 Gone`` (expired resourceVersion) relists.
* Cached by pod uid; a deleted pod's entry is kept ``deleted_pod_grace_secs`` so the last lines of a
  short-lived pod are still labelled.
* Owner: the controller reference, followed one more step for ReplicaSet -> Deployment and
  Job -> CronJob (one cached GET each).
* ``kubetrail.io/exclude: "true"`` on the pod or its namespace excludes all its containers;
  ``kubetrail.io/exclude-containers: a,b`` excludes those containers.
* ``kubetrail.io/parser: <format or payload mode>`` on a pod is passed on (only when present) as
  ``origin.metadata["kubernetes.annotations.kubetrail.io/parser"]``, where the server's parser dispatch
  (``kubetrail.formats.dispatch.ANNOTATION_KEY``) reads it; the agent never validates or applies it.
* Without API access (no service account, or the API refuses) the agent runs on path metadata alone
  and says so once; it keeps retrying in the background.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubetrail.agent.config import AgentConfig
from kubetrail.agent.metrics import Metrics

__all__ = [
    "EXCLUDE",
    "EXCLUDE_CONTAINERS",
    "PARSER",
    "PARSER_METADATA_KEY",
    "KubeMetadata",
    "PodInfo",
    "parse_pod_path",
]

log = logging.getLogger("kubetrail.agent.kube")

EXCLUDE = "kubetrail.io/exclude"
EXCLUDE_CONTAINERS = "kubetrail.io/exclude-containers"
PARSER = "kubetrail.io/parser"
# Same value as kubetrail.formats.dispatch.ANNOTATION_KEY (a test checks); not imported from there because
# the agent must not import pyarrow.
PARSER_METADATA_KEY = f"kubernetes.annotations.{PARSER}"
_STARTUP_WAIT_SECS = 10.0
_NEW_POD_WAIT_SECS = 5.0
_POD_PATH = re.compile(r"/pods/([^/_]+)_([^/_]+)_([^/]+)/([^/]+)/(\d+)\.log")


def parse_pod_path(path: str) -> dict[str, str] | None:
    """``/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`` -> pod coordinates (schema columns)."""
    m = _POD_PATH.search(path)
    if m is None:
        return None
    return {
        "kubernetes.namespace": m.group(1),
        "kubernetes.pod.name": m.group(2),
        "kubernetes.pod.uid": m.group(3),
        "kubernetes.container.name": m.group(4),
    }


@dataclass(slots=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    node: str
    labels: dict[str, str]
    annotations: dict[str, str]
    service_account: str
    images: dict[str, str]
    owner: tuple[str, str] | None
    deleted_at: float | None = None
    owner_resolved: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def pod_info(obj: dict[str, Any]) -> PodInfo:
    """PodInfo from a Pod object (plain JSON dict)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    images: dict[str, str] = {}
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(kind) or []:
            if container.get("name") and container.get("image"):
                images[container["name"]] = container["image"]
    owner = None
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") or owner is None:
            owner = (str(ref.get("kind", "")), str(ref.get("name", "")))
    return PodInfo(
        uid=str(meta.get("uid", "")),
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        node=str(spec.get("nodeName", "")),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        service_account=str(spec.get("serviceAccountName", "") or ""),
        images=images,
        owner=owner,
    )


class KubeMetadata:
    """Metadata lookup for file paths; ``version`` changes whenever the cache does."""

    def __init__(self, cfg: AgentConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.kcfg = cfg.kubernetes
        self.metrics = metrics
        self.node = cfg.node_name
        self.pods: dict[str, PodInfo] = {}
        self.namespaces: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        self.node_labels: dict[str, str] = {}
        self.owners: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.version = 0
        self.connected = False
        self.ready = asyncio.Event()
        self._said_path_only = False
        self._enabled = self.enabled()
        self._created = time.monotonic()
        self._unknown_since: dict[str, float] = {}

    # ------------------------------------------------------------------ lookups
    def lookup(self, path: str, source: str) -> tuple[dict[str, str], bool, str | None]:
        coords = parse_pod_path(path) if source == "container" else None
        if coords is None:
            return ({"host.name": self.node}, False, None)
        meta = {"host.name": self.node, "kubernetes.node.name": self.node, **coords}
        container = coords["kubernetes.container.name"]
        key = f"{coords['kubernetes.namespace']}/{coords['kubernetes.pod.name']}/{container}"
        pod = self.pods.get(coords["kubernetes.pod.uid"])
        ns_labels, ns_annotations = self.namespaces.get(coords["kubernetes.namespace"], ({}, {}))
        if ns_labels:
            meta["kubernetes.namespace_labels"] = orjson.dumps(
                ns_labels, option=orjson.OPT_SORT_KEYS
            ).decode()
        if self.node_labels:
            meta["kubernetes.node.labels"] = orjson.dumps(
                self.node_labels, option=orjson.OPT_SORT_KEYS
            ).decode()
        excluded = ns_annotations.get(EXCLUDE, "").lower() == "true"
        if pod is None:
            return meta, excluded, key
        if pod.labels:
            meta["kubernetes.labels"] = orjson.dumps(pod.labels, option=orjson.OPT_SORT_KEYS).decode()
        owner = pod.owner_resolved or pod.owner
        if owner is not None:
            meta["kubernetes.owner.kind"], meta["kubernetes.owner.name"] = owner
        if pod.service_account:
            meta["kubernetes.serviceaccount.name"] = pod.service_account
        if container in pod.images:
            meta["container.image.name"] = pod.images[container]
        parser = pod.annotations.get(PARSER, "").strip()
        if parser:
            meta[PARSER_METADATA_KEY] = parser
        if pod.annotations.get(EXCLUDE, "").lower() == "true":
            excluded = True
        excluded_containers = {c.strip() for c in pod.annotations.get(EXCLUDE_CONTAINERS, "").split(",")}
        if container in excluded_containers:
            excluded = True
        return meta, excluded, key

    def hold(self, path: str, source: str) -> bool:
        """Wait a little before shipping a container's lines when its metadata is not known yet.

        At start-up (until the first list, at most ``_STARTUP_WAIT_SECS``) and for a pod the watch has
        not reported yet (at most ``_NEW_POD_WAIT_SECS`` after its first file was seen), so existing lines
        are labelled and excluded pods are not shipped before their annotation is known."""
        if source != "container" or not self._enabled:
            return False
        now = time.monotonic()
        if not self.ready.is_set():
            return now - self._created < _STARTUP_WAIT_SECS
        if not self.connected:
            return False
        coords = parse_pod_path(path)
        if coords is None or coords["kubernetes.pod.uid"] in self.pods:
            return False
        first = self._unknown_since.setdefault(coords["kubernetes.pod.uid"], now)
        return now - first < _NEW_POD_WAIT_SECS

    # ------------------------------------------------------------------ cache updates
    def apply_pod(self, event: str, obj: dict[str, Any]) -> PodInfo | None:
        if event == "BOOKMARK":
            return None
        info = pod_info(obj)
        if not info.uid:
            return None
        if event == "DELETED":
            known = self.pods.get(info.uid, info)
            known.deleted_at = time.monotonic()
            self.pods[info.uid] = known
        else:
            old = self.pods.get(info.uid)
            if old is not None:
                info.owner_resolved = old.owner_resolved if old.owner == info.owner else None
            self.pods[info.uid] = info
        self.version += 1
        return info

    def expire(self) -> None:
        now = time.monotonic()
        gone = [
            uid
            for uid, pod in self.pods.items()
            if pod.deleted_at is not None and now - pod.deleted_at >= self.kcfg.deleted_pod_grace_secs
        ]
        for uid in gone:
            del self.pods[uid]
        if gone:
            self.version += 1

    # ------------------------------------------------------------------ API
    def _client(self) -> Any:
        from lightkube import AsyncClient, KubeConfig

        token = None
        if self.kcfg.token_file.exists():
            token = self.kcfg.token_file.read_text().strip()
        if self.kcfg.api_url is not None:
            cluster: dict[str, Any] = {"server": self.kcfg.api_url}
            if self.kcfg.ca_file.exists():
                cluster["certificate-authority"] = str(self.kcfg.ca_file)
            user: dict[str, Any] = {"token": token} if token else {}
            config = KubeConfig.from_dict(
                {
                    "clusters": [{"name": "c", "cluster": cluster}],
                    "users": [{"name": "u", "user": user}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        else:
            config = KubeConfig.from_service_account(str(self.kcfg.token_file.parent))
        return AsyncClient(config=config, timeout=None)

    def enabled(self) -> bool:
        if self.kcfg.enabled == "false":
            return False
        return not (
            self.kcfg.enabled == "auto" and self.kcfg.api_url is None and not self.kcfg.token_file.exists()
        )

    def _path_only(self, why: str) -> None:
        self.metrics.kube_metadata.set(0)
        if not self._said_path_only:
            self._said_path_only = True
            log.warning("no Kubernetes API access: using path metadata only (%s)", why, extra={"reason": why})

    async def run(self) -> None:
        if not self.enabled():
            self._path_only("kubernetes.enabled is off or no in-cluster service account")
            self.ready.set()
            return
        backoff = 1.0
        while True:
            try:
                client = self._client()
                await asyncio.gather(
                    self._watch_pods(client), self._watch_namespaces(client), self._node(client)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                self._path_only(f"{type(exc).__name__}: {exc}")
                self.ready.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    async def _node(self, client: Any) -> None:
        from lightkube.resources.core_v1 import Node

        while True:
            try:
                node = await client.get(Node, name=self.node)
                labels = dict(node.metadata.labels or {})
                if labels != self.node_labels:
                    self.node_labels = labels
                    self.version += 1
            except Exception as exc:
                log.debug("cannot read node labels: %s", exc)
            await asyncio.sleep(600)

    async def _watch_pods(self, client: Any) -> None:
        from lightkube import ALL_NS
        from lightkube.resources.core_v1 import Pod

        fields = {"spec.nodeName": self.node}
        await self._list_watch(client, Pod, ALL_NS, fields, self._on_pod)

    async def _watch_namespaces(self, client: Any) -> None:
        from lightkube.resources.core_v1 import Namespace

        await self._list_watch(client, Namespace, None, None, self._on_namespace)

    async def _on_pod(self, event: str, obj: dict[str, Any], client: Any) -> None:
        info = self.apply_pod(event, obj)
        if info is not None and info.owner is not None and info.owner[0] in ("ReplicaSet", "Job"):
            resolved = await self._resolve_owner(client, info.namespace, info.owner)
            if resolved != info.owner_resolved:
                self.pods[info.uid].owner_resolved = resolved
                self.version += 1

    async def _on_namespace(self, event: str, obj: dict[str, Any], client: Any) -> None:
        if event == "BOOKMARK":
            return
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if event == "DELETED":
            self.namespaces.pop(name, None)
        else:
            self.namespaces[name] = (dict(meta.get("labels") or {}), dict(meta.get("annotations") or {}))
        self.version += 1

    async def _resolve_owner(self, client: Any, namespace: str, owner: tuple[str, str]) -> tuple[str, str]:
        key = (namespace, *owner)
        if key in self.owners:
            return self.owners[key]
        from lightkube.resources.apps_v1 import ReplicaSet
        from lightkube.resources.batch_v1 import Job

        resource = ReplicaSet if owner[0] == "ReplicaSet" else Job
        resolved = owner
        try:
            obj = await client.get(resource, name=owner[1], namespace=namespace)
            for ref in obj.metadata.ownerReferences or []:
                if ref.controller:
                    resolved = (ref.kind, ref.name)
        except Exception as exc:
            log.warning("cannot resolve owner %s: %s", owner, exc)
        self.owners[key] = resolved
        return resolved

    async def _list_watch(
        self, client: Any, resource: Any, namespace: Any, fields: Any, handler: Any
    ) -> None:
        """List, then watch from the list's resourceVersion; relist on 410 Gone."""
        import httpx
        from lightkube.core.exceptions import ApiError

        while True:
            listing = client.list(resource, namespace=namespace, fields=fields)
            seen: set[str] = set()
            async for obj in listing:
                raw = obj.to_dict()
                seen.add(str(raw.get("metadata", {}).get("uid", raw.get("metadata", {}).get("name"))))
                await handler("ADDED", raw, client)
            version = listing.resourceVersion if seen else _list_version(listing)
            self.connected = True
            self.metrics.kube_metadata.set(1)
            self.ready.set()
            try:
                async for event, obj in self._watch(client, resource, namespace, fields, version):
                    await handler(event, obj.to_dict(), client)
            except (ApiError, httpx.HTTPStatusError) as exc:
                code = exc.status.code if isinstance(exc, ApiError) else exc.response.status_code
                if code != 410:
                    raise
                log.info("watch expired (410 Gone): relisting", extra={"resource": resource.__name__})

    def _watch(self, client: Any, resource: Any, namespace: Any, fields: Any, version: str | None) -> Any:
        from lightkube.core.selector import build_selector

        params = {
            "timeoutSeconds": self.kcfg.watch_timeout_secs,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "fieldSelector": build_selector(fields, for_fields=True) if fields else None,
        }
        inner = client._client  # lightkube's public watch() cannot ask for bookmarks
        br = inner.prepare_request("list", res=resource, namespace=namespace, watch=True, params=params)
        return inner.watch(br)


def _list_version(listing: Any) -> str | None:
    try:
        return str(listing.resourceVersion)
    except Exception:
        return None
