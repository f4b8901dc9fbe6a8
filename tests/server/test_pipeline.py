"""The pipeline with the real formats ``Parsing`` and the real ``Store``: agent chunks in, rows out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.components import Transform, transforms
from kubetrail.config import validate_config
from kubetrail.receivers.agent_protocol import PATH, encode_request
from kubetrail.server.app import KubetrailServer
from kubetrail.server.pipeline import Pipeline
from kubetrail.server.wal import WalRecord, WriteAheadLog
from kubetrail.store import Store
from tests.server.helpers import LineParser, MemoryStore

CRI = (
    b"2026-11-27T05:00:00.000000001Z stdout F GET /index.html 200\n"
    b"2026-11-27T05:00:01.000000001Z stderr P part one \n"
    b"2026-11-27T05:00:01.000000002Z stderr F and two\n"
)


def _origin(offset: int = 0) -> Origin:
    return Origin(
        node="node-1",
        source="container",
        path="/var/log/pods/shop_web-1_0b8e/nginx/0.log",
        file=FileIdentity(1, 99, "fp"),
        offset=offset,
    )


def _server(tmp_path: Path, extra: dict[str, Any] | None = None) -> KubetrailServer:
    raw: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "cluster": {"name": "prod-eu"},
        "server": {"listen": "127.0.0.1:0", "store_flush_interval_secs": 0.2},
        "receivers": {"agent": {"type": "agent", "listen": "127.0.0.1:0"}},
        **(extra or {}),
    }
    cfg, topology = validate_config(raw)
    return KubetrailServer(cfg, topology)


def test_agent_to_real_store(tmp_path: Path) -> None:
    async def go() -> None:
        server = _server(
            tmp_path, {"transforms": {"tag": {"type": "add_fields", "fields": {"event.module": "x"}}}}
        )
        await server.start()
        try:
            host, port = server.receivers["agent"].address  # type: ignore[attr-defined]
            body, headers = encode_request("node-1", [Chunk(_origin(), CRI)])
            async with httpx.AsyncClient() as client:
                for _ in range(2):  # the resend stores nothing twice
                    r = await client.post(f"http://{host}:{port}{PATH}", content=body, headers=headers)
                    assert r.status_code == 200, r.text
        finally:
            await server.stop()

    asyncio.run(go())
    store = Store(tmp_path / "data" / "store")
    try:
        table = store.sql(
            'SELECT message, "kubernetes.namespace", "orchestrator.cluster.name" FROM logs ORDER BY 1'
        )
    finally:
        store.close()
    rows = table.to_pylist()
    assert [r["message"] for r in rows] == ["GET /index.html 200", "part one and two"]
    assert {r["kubernetes.namespace"] for r in rows} == {"shop"}
    assert {r["orchestrator.cluster.name"] for r in rows} == {"prod-eu"}


@transforms.register("explode_for_test")
class _Explode(Transform):  # type: ignore[type-arg]
    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise RuntimeError("boom")


def test_failing_transform_keeps_events_and_bad_record_is_flagged(tmp_path: Path) -> None:
    store = MemoryStore()

    async def go() -> None:
        wal = WriteAheadLog(tmp_path / "wal")
        wal.open()
        pipeline = Pipeline(wal, LineParser(), store, transforms=[_Explode(_Explode.Config(), "explode")])
        pipeline.start()
        body, _ = encode_request("n", [Chunk(_origin(), b"one\ntwo\n")], "identity")
        await pipeline.submit("agent", "agent+identity", body)
        await pipeline.submit("agent", "agent+identity", b"\x00not msgpack")
        await pipeline.submit("mystery", "nosuchcodec", b"payload")
        await pipeline.stop()
        await wal.close()
        assert wal.checkpoint_seq == 3

    asyncio.run(go())
    flagged = [r for r in store.rows.values() if r["event.parse_error"]]
    assert sorted(r["message"] for r in store.rows.values() if not r["event.parse_error"]) == ["one", "two"]
    assert len(flagged) == 2
    assert {r["event.parse_error"] for r in flagged} <= {"KT-PROTO", "KT-ERROR"}
    assert all(r["error.message"] for r in flagged)


def test_checkpoint_waits_for_parser_state_hold(tmp_path: Path) -> None:
    store = MemoryStore()

    async def go() -> None:
        wal = WriteAheadLog(tmp_path / "wal")
        wal.open()
        pipeline = Pipeline(wal, LineParser(), store, flush_interval_secs=0.05, state_hold_secs=3600)
        pipeline.start()
        body, _ = encode_request("n", [Chunk(_origin(), b"x\n")], "identity")
        await pipeline.submit("agent", "agent+identity", body)
        await asyncio.sleep(0.3)
        assert wal.checkpoint_seq == 0  # processed, but parser state might still hold its bytes
        await pipeline.stop()  # a graceful stop flushes parsers: now everything is checkpointed
        assert wal.checkpoint_seq == 1
        wal.close_sync()

    asyncio.run(go())
    assert [r.seq for r in _replay(tmp_path / "wal")] == []


def _replay(path: Path) -> list[WalRecord]:
    wal = WriteAheadLog(path)
    wal.open()
    try:
        return list(wal.replay())
    finally:
        wal.close_sync()


def test_search_api_is_mounted_and_needs_a_hunter_token(tmp_path: Path) -> None:
    import yaml

    from kubetrail.server.auth import hash_token

    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"name": "agents", "hash": hash_token("agent-secret"), "roles": ["agent"]},
                    {"name": "alice", "hash": hash_token("hunter-secret"), "roles": ["hunter"]},
                ]
            }
        )
    )

    async def go() -> None:
        server = _server(tmp_path, {"server": {"listen": "127.0.0.1:0", "tokens_file": str(tokens)}})
        await server.start()
        try:
            host, port = server.receivers["agent"].address  # type: ignore[attr-defined]
            body, headers = encode_request("node-1", [Chunk(_origin(), CRI)], token="agent-secret")
            async with httpx.AsyncClient() as client:
                r = await client.post(f"http://{host}:{port}{PATH}", content=body, headers=headers)
                assert r.status_code == 200
                assert server.pipeline is not None
                await server.pipeline.wait_idle()
                assert server.api is not None
                api_host, api_port = server.api.address
                url = f"http://{api_host}:{api_port}/api/v1/search"
                params = {"q": "*", "since": "30000d"}
                assert (await client.get(url, params=params)).status_code == 401
                agent_auth = {"Authorization": "Bearer agent-secret"}
                assert (await client.get(url, params=params, headers=agent_auth)).status_code == 403
                auth = {"Authorization": "Bearer hunter-secret"}
                r = await client.get(url, params=params, headers=auth)
                assert r.status_code == 200, r.text
                messages = sorted(orjson.loads(line)["message"] for line in r.text.splitlines() if line)
                assert messages == ["GET /index.html 200", "part one and two"]
        finally:
            await server.stop()

    asyncio.run(go())


class _FlakyStore(MemoryStore):
    """Fails the first appends and flushes (a full disk that is then cleared)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def append(self, batch: pa.RecordBatch) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("No space left on device")
        super().append(batch)


def test_store_failures_are_retried_and_the_wal_kept(tmp_path: Path) -> None:
    store = _FlakyStore(failures=2)

    async def go() -> None:
        wal = WriteAheadLog(tmp_path / "wal")
        wal.open()
        pipeline = Pipeline(wal, LineParser(), store, flush_interval_secs=0.05, state_hold_secs=0)
        pipeline.start()
        body, _ = encode_request("n", [Chunk(_origin(), b"kept\n")], "identity")
        await pipeline.submit("agent", "agent+identity", body)
        await asyncio.sleep(0.2)
        assert store.rows == {} and wal.checkpoint_seq == 0  # failing: nothing checkpointed
        for _ in range(40):
            await asyncio.sleep(0.1)
            if store.rows:
                break
        await pipeline.stop()
        assert wal.checkpoint_seq == 1
        wal.close_sync()

    asyncio.run(go())
    assert store.messages() == ["kept"]
    assert "KT-STORE" not in store.messages()
