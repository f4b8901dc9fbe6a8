from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import httpx
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.receivers.elasticsearch_bulk import BulkReceiver, parse_bulk
from kubetrail.server.app import KubetrailServer
from kubetrail.server.settings import LimitsConfig
from tests.server.helpers import MemoryStore, make_server, settle


def _filebeat_doc(i: int) -> dict[str, Any]:
    """A document as Filebeat 8's container input + add_kubernetes_metadata writes it."""
    return {
        "@timestamp": f"2026-11-27T05:00:0{i}.123Z",
        "message": f"filebeat line {i}",
        "stream": "stdout",
        "input": {"type": "container"},
        "log": {"offset": 1000 + i, "file": {"path": "/var/log/containers/web_shop_nginx-abc.log"}},
        "kubernetes": {
            "pod": {"name": "web-1", "uid": "uid-9"},
            "namespace": "shop",
            "container": {"name": "nginx"},
            "node": {"name": "node-4"},
            "labels": {"app": "web"},
        },
        "container": {"id": "c0ffee", "image": {"name": "nginx:1.27"}, "runtime": "containerd"},
        "host": {"name": "node-4"},
        "agent": {"type": "filebeat", "version": "8.15.0"},
        "ecs": {"version": "8.0.0"},
    }


def _ndjson(pairs: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> bytes:
    out = b""
    for action, doc in pairs:
        out += orjson.dumps(action) + b"\n"
        if doc is not None:
            out += orjson.dumps(doc) + b"\n"
    return out


def _base(server: KubetrailServer) -> str:
    receiver = server.receivers["es"]
    assert isinstance(receiver, BulkReceiver)
    host, port = receiver.address
    return f"http://{host}:{port}"


async def _run(tmp_path: Path, store: MemoryStore, body: Any) -> None:
    cfg = {"receivers": {"es": {"type": "elasticsearch_bulk", "listen": "127.0.0.1:0"}}}
    server = make_server(tmp_path, cfg, store)
    await server.start()
    try:
        async with httpx.AsyncClient() as client:
            await body(_base(server), client)
        await settle(server)
    finally:
        await server.stop()


def test_filebeat_bulk(tmp_path: Path) -> None:
    store = MemoryStore()
    body = _ndjson([({"create": {"_index": "filebeat-8.15.0"}}, _filebeat_doc(i)) for i in range(3)])

    async def go(base: str, client: httpx.AsyncClient) -> None:
        info = await client.get(base + "/")
        assert info.json()["version"]["number"].startswith("8.")
        assert info.headers["X-Elastic-Product"] == "Elasticsearch"
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        r = await client.post(base + "/_bulk", content=gzip.compress(body), headers=headers)
        assert r.status_code == 200
        result = r.json()
        assert result["errors"] is False
        assert [item["create"]["status"] for item in result["items"]] == [201, 201, 201]
        # the same request retried stores nothing twice
        r = await client.post(base + "/_bulk", content=gzip.compress(body), headers=headers)
        assert r.status_code == 200

    asyncio.run(_run(tmp_path, store, go))
    assert len(store.rows) == 3
    row = next(r for r in store.rows.values() if r["message"] == "filebeat line 1")
    assert row["kubernetes.pod.name"] == "web-1"
    assert row["kubernetes.pod.uid"] == "uid-9"
    assert row["kubernetes.namespace"] == "shop"
    assert row["kubernetes.container.name"] == "nginx"
    assert row["kubernetes.labels"] == '{"app":"web"}'
    assert row["container.image.name"] == "nginx:1.27"
    assert row["host.name"] == "node-4"
    assert row["log.offset"] == 1001
    assert row["log.file.path"] == "/var/log/containers/web_shop_nginx-abc.log"
    assert row["@timestamp"].isoformat().startswith("2026-11-27T05:00:01.123")
    assert row["event.dataset"] == "bulk"


def test_fluent_bit_es_output_and_item_errors(tmp_path: Path) -> None:
    store = MemoryStore()
    fluent_bit_doc = {
        "@timestamp": "2026-11-27T05:00:00.000Z",
        "log": "fluent bit es line",
        "kubernetes": {"pod_name": "api-0", "namespace_name": "prod", "container_name": "api"},
    }
    body = (
        _ndjson(
            [
                ({"index": {"_id": "doc-1"}}, fluent_bit_doc),
                ({"update": {"_id": "x"}}, {"doc": {}}),
                ({"delete": {"_id": "y"}}, None),
            ]
        )
        + b'{"index":{}}\n{not json}\n'
    )

    async def go(base: str, client: httpx.AsyncClient) -> None:
        r = await client.post(
            base + "/fluentbit/_bulk", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        result = r.json()
        assert result["errors"] is True
        statuses = [next(iter(item.values()))["status"] for item in result["items"]]
        assert statuses == [201, 400, 400, 400]
        assert result["items"][0]["index"]["_index"] == "fluentbit"

    asyncio.run(_run(tmp_path, store, go))
    [row] = store.rows.values()
    assert row["message"] == "fluent bit es line"
    assert row["kubernetes.pod.name"] == "api-0"
    assert row["kubernetes.namespace"] == "prod"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([b'{"index":{}}', b'{"a":1}', b"[]", b"{}"])),
        max_size=8,
    )
)
def test_fuzz_bulk_parser(lines: list[bytes]) -> None:
    items = parse_bulk(b"\n".join(lines), "idx", LimitsConfig())
    assert all((i.document is None) == (i.error is not None) for i in items)
