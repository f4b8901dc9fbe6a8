from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.errors import ProtocolError
from kubetrail.formats.dispatch import Parsing
from kubetrail.receivers.audit_webhook import AuditWebhookReceiver, decode_audit_record, validate_event_list
from kubetrail.server.app import KubetrailServer
from kubetrail.server.settings import LimitsConfig
from kubetrail.server.wal import WalRecord
from tests.server.helpers import MemoryStore, make_server, settle


def _event(audit_id: str, verb: str, resource: str, code: int) -> dict[str, Any]:
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/shop/{resource}/x",
        "verb": verb,
        "user": {"username": "system:serviceaccount:shop:web", "groups": ["system:serviceaccounts"]},
        "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": resource, "namespace": "shop", "name": "x", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-11-27T05:00:00.100000Z",
        "stageTimestamp": "2026-11-27T05:00:00.120000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }


EVENT_LIST = {
    "kind": "EventList",
    "apiVersion": "audit.k8s.io/v1",
    "metadata": {},
    "items": [_event("a-1", "get", "secrets", 200), _event("a-2", "create", "pods", 403)],
}


def _url(server: KubetrailServer) -> str:
    receiver = server.receivers["audit"]
    assert isinstance(receiver, AuditWebhookReceiver)
    host, port = receiver.address
    return f"http://{host}:{port}/api/v1/audit"


async def _run(tmp_path: Path, store: MemoryStore, body: Any) -> None:
    cfg = {"receivers": {"audit": {"type": "audit_webhook", "listen": "127.0.0.1:0"}}}
    server = make_server(tmp_path, cfg, store, parser=Parsing())
    await server.start()
    try:
        async with httpx.AsyncClient() as client:
            await body(server, client)
        await settle(server)
    finally:
        await server.stop()


def test_event_list_post_like_kube_apiserver(tmp_path: Path) -> None:
    store = MemoryStore()
    payload = orjson.dumps(EVENT_LIST)  # the API server sends compact JSON

    async def body(server: KubetrailServer, client: httpx.AsyncClient) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "kube-apiserver-admission"}
        r = await client.post(_url(server), content=payload, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted_events": 2}
        # the API server retries a batch it did not see acknowledged: nothing is stored twice
        r = await client.post(_url(server), content=payload, headers=headers)
        assert r.status_code == 200
        r = await client.post(
            _url(server), content=gzip.compress(payload), headers={"Content-Encoding": "gzip"}
        )
        assert r.status_code == 200

    asyncio.run(_run(tmp_path, store, body))
    rows = sorted(store.rows.values(), key=lambda r: r["kubernetes.audit.auditID"])
    assert len(rows) == 2
    assert [r["kubernetes.audit.verb"] for r in rows] == ["get", "create"]
    assert rows[0]["kubernetes.audit.objectRef.resource"] == "secrets"
    assert rows[1]["kubernetes.audit.responseStatus.code"] == 403
    assert rows[0]["user.name"] == "system:serviceaccount:shop:web"
    assert rows[0]["source.ip"] == "10.0.0.7"
    assert rows[0]["event.dataset"] == "audit"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (orjson.dumps({"kind": "Pod"}), 400),
        (orjson.dumps({"kind": "EventList", "items": [1, 2]}), 400),
    ],
)
def test_bad_bodies_are_400(tmp_path: Path, payload: bytes, status: int) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer, client: httpx.AsyncClient) -> None:
        r = await client.post(_url(server), content=payload)
        assert r.status_code == status
        assert r.json()["error"]["code"] == "KT-PROTO"

    asyncio.run(_run(tmp_path, store, body))
    assert store.rows == {}


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.text(max_size=5)),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(st.sampled_from(["kind", "items", "x"]), c, max_size=3)
            ),
            max_leaves=10,
        ).map(orjson.dumps),
    )
)
def test_fuzz_event_list_validation(body: bytes) -> None:
    try:
        line, count = validate_event_list(body, LimitsConfig())
    except ProtocolError:
        return
    assert b"\n" not in line and count >= 0
    assert decode_audit_record(WalRecord(1, "audit", "audit+x", line), None)[0].data.endswith(b"\n")
