"""Kubernetes metadata: list + watch against a protocol-faithful test API server.

The Kubernetes API cannot run in this environment; ``tests/agent/kube_api.py`` stands in for it and
speaks the real wire protocol (PodList with resourceVersion, chunked watch events, BOOKMARK, 410 Gone on
an expired resourceVersion). The agent's real client code (lightkube) talks to it over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubetrail.agent.config import AgentConfig
from kubetrail.agent.kube import KubeMetadata, parse_pod_path
from kubetrail.agent.metrics import Metrics
from tests.agent.kube_api import FakeKubeAPI, namespace, pod


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    fake = FakeKubeAPI()
    fake.add("namespaces", namespace("shop", labels={"team": "payments"}))
    fake.add("namespaces", namespace("quiet", annotations={"kubetrail.io/exclude": "true"}))
    fake.add(
        "pods",
        pod("web-7d9f-abcde", "uid-web", "shop", labels={"app": "web"}, owner=("ReplicaSet", "web-7d9f")),
    )
    fake.add(
        "pods",
        pod("report-2901-x", "uid-job", "shop", owner=("Job", "report-2901"), service_account="reporter"),
    )
    fake.add("pods", pod("elsewhere", "uid-other", "shop", node="node-b"))
    fake.add("pods", pod("noisy", "uid-noisy", "quiet"))
    fake.add(
        "pods",
        pod(
            "sidecars",
            "uid-side",
            "shop",
            annotations={"kubetrail.io/exclude-containers": "istio-proxy, envoy"},
            containers={"app": "shop:2", "istio-proxy": "istio/proxyv2:1.22"},
        ),
    )
    fake.put_single(
        "/apis/apps/v1/namespaces/shop/replicasets/web-7d9f",
        {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "metadata": {
                "name": "web-7d9f",
                "namespace": "shop",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                        "uid": "d1",
                        "controller": True,
                    }
                ],
            },
        },
    )
    fake.put_single(
        "/apis/batch/v1/namespaces/shop/jobs/report-2901",
        {
            "kind": "Job",
            "apiVersion": "batch/v1",
            "spec": {"template": {"spec": {"containers": [{"name": "report", "image": "report:1"}]}}},
            "metadata": {
                "name": "report-2901",
                "namespace": "shop",
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": "report",
                        "uid": "c1",
                        "controller": True,
                    }
                ],
            },
        },
    )
    fake.put_single(
        "/api/v1/nodes/node-a",
        {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-a", "labels": {"zone": "eu-1a"}}},
    )
    fake.start()
    yield fake
    fake.stop()


def _cfg(tmp_path: Path, url: str | None, **kube: object) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "node_name": "node-a",
            "data_dir": str(tmp_path),
            "kubernetes": {
                "enabled": "true" if url else "auto",
                "api_url": url,
                "token_file": str(tmp_path / "no-token"),
                "ca_file": str(tmp_path / "no-ca"),
                "watch_timeout_secs": 2,
                **kube,
            },
        }
    )


def path(ns: str, name: str, uid: str, container: str = "app") -> str:
    return f"/var/log/pods/{ns}_{name}_{uid}/{container}/0.log"


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def test_parse_pod_path() -> None:
    assert parse_pod_path("/var/log/pods/kube-system_etcd-cp_0f1e/etcd/3.log") == {
        "kubernetes.namespace": "kube-system",
        "kubernetes.pod.name": "etcd-cp",
        "kubernetes.pod.uid": "0f1e",
        "kubernetes.container.name": "etcd",
    }
    assert parse_pod_path("/var/log/syslog") is None


@pytest.mark.integration
def test_list_watch_owners_exclusions_grace_and_relist_on_410(tmp_path: Path, api: FakeKubeAPI) -> None:
    url = f"http://127.0.0.1:{api.port}"

    async def scenario() -> None:
        kube = KubeMetadata(_cfg(tmp_path, url, deleted_pod_grace_secs=0.5), Metrics())
        task = asyncio.create_task(kube.run())
        try:
            await _until(lambda: "uid-web" in kube.pods and kube.node_labels != {})
            # only this node's pods, via the field selector
            assert "uid-other" not in kube.pods
            assert all(
                w.get("fieldSelector") == "spec.nodeName=node-a" for w in api.watches if "fieldSelector" in w
            )
            await _until(lambda: kube.pods["uid-web"].owner_resolved is not None)
            meta, excluded, key = kube.lookup(path("shop", "web-7d9f-abcde", "uid-web"), "container")
            assert not excluded and key == "shop/web-7d9f-abcde/app"
            assert json.loads(meta["kubernetes.labels"]) == {"app": "web"}
            assert (meta["kubernetes.owner.kind"], meta["kubernetes.owner.name"]) == ("Deployment", "web")
            assert meta["container.image.name"] == "nginx:1.27"
            assert json.loads(meta["kubernetes.namespace_labels"]) == {"team": "payments"}
            assert json.loads(meta["kubernetes.node.labels"]) == {"zone": "eu-1a"}
            await _until(lambda: kube.pods["uid-job"].owner_resolved is not None)
            meta, _, _ = kube.lookup(path("shop", "report-2901-x", "uid-job"), "container")
            assert (meta["kubernetes.owner.kind"], meta["kubernetes.owner.name"]) == ("CronJob", "report")
            assert meta["kubernetes.serviceaccount.name"] == "reporter"
            # exclusions: namespace annotation, pod annotation listing containers
            assert kube.lookup(path("quiet", "noisy", "uid-noisy"), "container")[1] is True
            assert kube.lookup(path("shop", "sidecars", "uid-side", "istio-proxy"), "container")[1] is True
            assert kube.lookup(path("shop", "sidecars", "uid-side", "app"), "container")[1] is False

            # watch: ADDED and MODIFIED arrive
            api.add("pods", pod("late", "uid-late", "shop", labels={"v": "1"}))
            await _until(lambda: "uid-late" in kube.pods)
            api.modify("pods", "uid-late", lambda o: o["metadata"]["labels"].update(v="2"))
            await _until(lambda: kube.pods["uid-late"].labels.get("v") == "2")
            # DELETED: metadata kept for the grace period, then dropped
            api.delete("pods", "uid-late")
            await _until(lambda: kube.pods["uid-late"].deleted_at is not None)
            assert "kubernetes.labels" in kube.lookup(path("shop", "late", "uid-late"), "container")[0]
            await asyncio.sleep(0.6)
            kube.expire()
            assert "uid-late" not in kube.pods

            # bookmarks were requested and received
            assert any(w.get("allowWatchBookmarks") == "true" for w in api.watches)
            await _until(lambda: api.bookmarks_sent > 0)

            # history compacted while the watch is down -> 410 Gone -> the client relists
            lists_before = api.lists["pods"]
            api.compact()
            api.add("pods", pod("during-gap", "uid-gap", "shop"))
            api.compact()
            api.close_watches += 1  # end open streams: the client re-watches from its old resourceVersion
            await _until(lambda: api.gone_sent > 0 and api.lists["pods"] > lists_before)
            await _until(lambda: "uid-gap" in kube.pods)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_without_api_access_runs_on_path_metadata_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        kube = KubeMetadata(_cfg(tmp_path, None), Metrics())
        await kube.run()
        await kube.run()
        meta, excluded, _ = kube.lookup(path("shop", "web", "uid-web"), "container")
        assert meta["kubernetes.pod.name"] == "web" and not excluded

    with caplog.at_level("WARNING", logger="kubetrail.agent.kube"):
        asyncio.run(scenario())
    assert sum("path metadata only" in r.getMessage() for r in caplog.records) == 1


def test_unreachable_api_falls_back_and_retries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        kube = KubeMetadata(_cfg(tmp_path, "http://127.0.0.1:9"), Metrics())
        task = asyncio.create_task(kube.run())
        await asyncio.wait_for(kube.ready.wait(), 10)
        assert not kube.connected
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level("WARNING", logger="kubetrail.agent.kube"):
        asyncio.run(scenario())
    assert any("path metadata only" in r.getMessage() for r in caplog.records)


@pytest.mark.integration
def test_parser_annotation_is_passed_to_the_server_dispatch(tmp_path: Path) -> None:
    """``kubetrail.io/parser`` on a pod reaches the origin metadata under the key the server reads.

    Against the protocol-faithful test API server (the real Kubernetes API cannot run here)."""
    from kubetrail.agent.kube import PARSER_METADATA_KEY
    from kubetrail.chunk import Chunk, Origin
    from kubetrail.formats.dispatch import ANNOTATION_KEY, Parsing

    assert PARSER_METADATA_KEY == ANNOTATION_KEY
    fake = FakeKubeAPI()
    fake.add("namespaces", namespace("shop"))
    fake.add("pods", pod("legacy", "uid-legacy", "shop", annotations={"kubetrail.io/parser": "logfmt"}))
    fake.add("pods", pod("plain", "uid-plain", "shop", annotations={"team": "x"}))
    fake.start()

    async def scenario() -> None:
        kube = KubeMetadata(_cfg(tmp_path, f"http://127.0.0.1:{fake.port}"), Metrics())
        task = asyncio.create_task(kube.run())
        try:
            await _until(lambda: {"uid-legacy", "uid-plain"} <= kube.pods.keys())
            legacy_path = path("shop", "legacy", "uid-legacy")
            meta, excluded, _ = kube.lookup(legacy_path, "container")
            assert meta[ANNOTATION_KEY] == "logfmt" and not excluded
            # only when the pod has the annotation
            assert ANNOTATION_KEY not in kube.lookup(path("shop", "plain", "uid-plain"), "container")[0]
            # the server's dispatcher picks it up from exactly this metadata
            origin = Origin(node="node-a", source="container", path=legacy_path, metadata=meta)
            assert Parsing().choose(Chunk(origin, b""))[1] == "logfmt"
            # a change through the watch follows; removing the annotation removes the key
            fake.modify(
                "pods",
                "uid-legacy",
                lambda o: o["metadata"]["annotations"].update({"kubetrail.io/parser": "json"}),
            )
            await _until(lambda: kube.lookup(legacy_path, "container")[0].get(ANNOTATION_KEY) == "json")
            fake.modify("pods", "uid-legacy", lambda o: o["metadata"].pop("annotations"))
            await _until(lambda: ANNOTATION_KEY not in kube.lookup(legacy_path, "container")[0])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        fake.stop()
