from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from kubetrail.errors import ProtocolError
from kubetrail.receivers.otlp import OtlpReceiver, parse_request
from kubetrail.server.app import KubetrailServer
from kubetrail.server.settings import LimitsConfig
from tests.server.helpers import MemoryStore, make_server, settle

RESOURCE = {
    "service.name": "checkout",
    "k8s.pod.name": "checkout-5f7",
    "k8s.namespace.name": "shop",
    "k8s.pod.uid": "uid-1",
    "k8s.container.name": "app",
    "k8s.node.name": "node-2",
    "k8s.deployment.name": "checkout",
    "container.image.name": "ghcr.io/acme/checkout",
}


def _url(server: KubetrailServer) -> str:
    receiver = server.receivers["otlp"]
    assert isinstance(receiver, OtlpReceiver)
    host, port = receiver.address
    return f"http://{host}:{port}/v1/logs"


async def _run(tmp_path: Path, store: MemoryStore, body: object) -> None:
    server = make_server(tmp_path, {"receivers": {"otlp": {"type": "otlp", "listen": "127.0.0.1:0"}}}, store)
    await server.start()
    try:
        await body(server)  # type: ignore[operator]
        await settle(server)
    finally:
        await server.stop()


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_opentelemetry_sdk_exporter(tmp_path: Path, compression: Compression) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        def emit() -> None:
            provider = LoggerProvider(resource=Resource.create(RESOURCE))
            exporter = OTLPLogExporter(endpoint=_url(server), compression=compression, timeout=10)
            provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
            logger = logging.getLogger(f"otlp-test-{compression.value}")
            logger.propagate = False
            handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.warning("payment declined", extra={"order.id": "o-17"})
            logger.info("order placed")
            provider.force_flush()
            provider.shutdown()
            logger.removeHandler(handler)

        await asyncio.to_thread(emit)

    asyncio.run(_run(tmp_path, store, body))
    rows = {r["message"]: r for r in store.rows.values()}
    assert set(rows) == {"payment declined", "order placed"}
    row = rows["payment declined"]
    assert row["log.level"] == "warn" or row["log.level"] == "warning"
    assert row["kubernetes.pod.name"] == "checkout-5f7"
    assert row["kubernetes.namespace"] == "shop"
    assert row["kubernetes.pod.uid"] == "uid-1"
    assert row["kubernetes.container.name"] == "app"
    assert row["kubernetes.node.name"] == "node-2"
    assert row["host.name"] == "node-2"
    assert row["kubernetes.owner.kind"] == "Deployment"
    assert row["container.image.name"] == "ghcr.io/acme/checkout"
    assert row["event.dataset"] == "otlp"
    attributes = orjson.loads(row["attributes"])
    assert attributes["otel.attributes"]["order.id"] == "o-17"
    assert attributes["otel.resource"]["service.name"] == "checkout"


def test_json_encoding_and_errors(tmp_path: Path) -> None:
    store = MemoryStore()
    doc = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "k8s.pod.name", "value": {"stringValue": "p"}}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "s"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1764220000000000000",
                                "severityNumber": 17,
                                "body": {
                                    "kvlistValue": {"values": [{"key": "a", "value": {"intValue": "3"}}]}
                                },
                                "traceId": "5b8efff798038103d269b633813fc60c",
                            }
                        ],
                    }
                ],
            }
        ]
    }

    async def body(server: KubetrailServer) -> None:
        async with httpx.AsyncClient() as client:
            r = await client.post(
                _url(server), content=orjson.dumps(doc), headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 200 and r.json() == {}
            r = await client.post(
                _url(server), content=b"\xff\x00", headers={"Content-Type": "application/x-protobuf"}
            )
            assert r.status_code == 400
            r = await client.post(_url(server), content=b"{}", headers={"Content-Type": "text/plain"})
            assert r.status_code == 400

    asyncio.run(_run(tmp_path, store, body))
    [row] = store.rows.values()
    assert row["message"] == '{"a":3}'
    assert row["log.level"] == "error"
    assert row["kubernetes.pod.name"] == "p"
    assert row["@timestamp"].timestamp() == 1764220000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_protobuf_body(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_request(data, "proto", LimitsConfig())
