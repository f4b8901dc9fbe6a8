"""A protocol-faithful stand-in for the Kubernetes API server (the real one cannot run here).

It speaks the parts of the API the agent uses, the way kube-apiserver does:

* ``GET /api/v1/pods?fieldSelector=spec.nodeName=N`` -> ``PodList`` with ``metadata.resourceVersion``;
  ``GET /api/v1/namespaces`` likewise;
* ``...&watch=true&resourceVersion=RV`` -> a chunked stream of JSON watch events, one per line
  (``ADDED``/``MODIFIED``/``DELETED``, and ``BOOKMARK`` when ``allowWatchBookmarks=true``), every event
  after RV that matches the field selector, then live events until ``timeoutSeconds``;
* an RV older than the retained history (``compact()``) gets the real server's answer: an ``ERROR``
  event carrying a ``Status`` with code 410 (Gone, reason Expired); the client must relist;
* ``GET`` of single ReplicaSets, Jobs and Nodes (owner resolution, node labels).

Runs in a thread (uvicorn); the test mutates the cluster with ``add``/``modify``/``delete``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class FakeKubeAPI:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rv = 100
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"pods": {}, "namespaces": {}}
        self.singles: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, object)
        self.oldest_rv = 0
        self.lists: dict[str, int] = {"pods": 0, "namespaces": 0}
        self.watches: list[dict[str, str]] = []
        self.gone_sent = 0
        self.bookmarks_sent = 0
        self.close_watches = 0  # bump to end every open watch stream (like an apiserver restart)
        self.server: uvicorn.Server | None = None
        self.port = 0

    # ------------------------------------------------------------------ cluster changes
    def _record(self, kind: str, etype: str, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, kind, etype, copy.deepcopy(obj)))

    def add(self, kind: str, obj: dict[str, Any]) -> None:
        with self.lock:
            key = obj["metadata"].get("uid") or obj["metadata"]["name"]
            self.objects[kind][key] = obj
            self._record(kind, "ADDED", obj)

    def modify(self, kind: str, key: str, change: Any) -> None:
        with self.lock:
            obj = self.objects[kind][key]
            change(obj)
            self._record(kind, "MODIFIED", obj)

    def delete(self, kind: str, key: str) -> None:
        with self.lock:
            obj = self.objects[kind].pop(key)
            self._record(kind, "DELETED", obj)

    def put_single(self, path: str, obj: dict[str, Any]) -> None:
        self.singles[path] = obj

    def compact(self) -> None:
        """Forget history: watches from an older resourceVersion now get 410 Gone."""
        with self.lock:
            self.oldest_rv = self.rv
            self.events.clear()

    # ------------------------------------------------------------------ HTTP
    @staticmethod
    def _matches(obj: dict[str, Any], selector: str | None) -> bool:
        if not selector:
            return True
        for term in selector.split(","):
            field, _, value = term.partition("=")
            node: Any = obj
            for part in field.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if (node or "") != value:
                return False
        return True

    async def _collection(self, request: Request, kind: str, list_kind: str) -> Response:
        q = request.query_params
        selector = q.get("fieldSelector")
        if q.get("watch") in ("true", "1"):
            return self._watch(kind, q.get("resourceVersion"), selector, q)
        with self.lock:
            self.lists[kind] += 1
            items = [copy.deepcopy(o) for o in self.objects[kind].values() if self._matches(o, selector)]
            rv = str(self.rv)
        return JSONResponse(
            {"kind": list_kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}
        )

    def _watch(self, kind: str, rv: str | None, selector: str | None, q: Any) -> Response:
        self.watches.append(dict(q))
        timeout = float(q.get("timeoutSeconds") or 300)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        single_kind = {"pods": "Pod", "namespaces": "Namespace"}[kind]
        generation = self.close_watches

        async def stream() -> Any:
            last = int(rv) if rv else self.rv
            if rv and int(rv) < self.oldest_rv:
                self.gone_sent += 1
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {rv} ({self.oldest_rv})",
                    "reason": "Expired",
                    "code": 410,
                }
                yield json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"
                return
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while time.monotonic() < deadline and generation == self.close_watches:
                with self.lock:
                    fresh = [e for e in self.events if e[0] > last and e[1] == kind]
                for erv, _, etype, obj in fresh:
                    last = erv
                    if self._matches(obj, selector):
                        yield json.dumps({"type": etype, "object": obj}).encode() + b"\n"
                if bookmarks and time.monotonic() - last_bookmark > 0.5:
                    last_bookmark = time.monotonic()
                    self.bookmarks_sent += 1
                    mark = {
                        "kind": single_kind,
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(self.rv)},
                    }
                    last = max(last, self.rv)
                    yield json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n"
                await asyncio.sleep(0.02)

        return StreamingResponse(stream(), media_type="application/json")

    async def _single(self, request: Request) -> Response:
        obj = self.singles.get(request.url.path)
        if obj is None:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
            }
            return JSONResponse(status, status_code=404)
        return JSONResponse(obj)

    def app(self) -> Starlette:
        async def pods(request: Request) -> Response:
            return await self._collection(request, "pods", "PodList")

        async def namespaces(request: Request) -> Response:
            return await self._collection(request, "namespaces", "NamespaceList")

        return Starlette(
            routes=[
                Route("/api/v1/pods", pods),
                Route("/api/v1/namespaces", namespaces),
                Route("/api/v1/nodes/{name}", self._single),
                Route("/apis/apps/v1/namespaces/{ns}/replicasets/{name}", self._single),
                Route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", self._single),
            ]
        )

    def start(self) -> str:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        thread = threading.Thread(target=self.server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not (self.server.started and self.server.servers) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.close_watches += 1
            self.server.should_exit = True


def pod(
    name: str,
    uid: str,
    namespace: str = "default",
    node: str = "node-a",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
    containers: dict[str, str] | None = None,
    service_account: str = "default",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": f"o-{owner[1]}",
                "controller": True,
            }
        ]
    spec = {
        "nodeName": node,
        "serviceAccountName": service_account,
        "containers": [{"name": n, "image": i} for n, i in (containers or {"app": "nginx:1.27"}).items()],
    }
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec}


def namespace(
    name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"ns-{name}", "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": meta}
