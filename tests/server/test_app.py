from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import msgpack
import pytest
import yaml

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.receivers.agent import AgentReceiver
from kubetrail.receivers.agent_protocol import PATH, encode_request
from kubetrail.server.auth import hash_token
from tests.server.helpers import LineParser as LineParserForThread
from tests.server.helpers import MemoryStore, make_server, settle


def _chunk(offset: int, lines: list[str], inode: int = 7) -> Chunk:
    origin = Origin(
        node="node-a",
        source="container",
        path="/var/log/pods/default_web_uid/nginx/0.log",
        file=FileIdentity(1, inode, "ff"),
        offset=offset,
    )
    return Chunk(origin, "".join(line + "\n" for line in lines).encode())


def _agent_cfg(**server: object) -> dict[str, object]:
    return {"receivers": {"agent": {"type": "agent", "listen": "127.0.0.1:0"}}, "server": dict(server)}


def _url(server: object, name: str = "agent") -> str:
    receiver = server.receivers[name]  # type: ignore[attr-defined]
    assert isinstance(receiver, AgentReceiver)
    host, port = receiver.address
    return f"http://{host}:{port}{PATH}"


def test_agent_round_trip_dedup_and_health(tmp_path: Path) -> None:
    store = MemoryStore()

    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg(), store)
        await server.start()
        try:
            body, headers = encode_request(
                "node-a", [_chunk(0, ["a", "b"]), _chunk(4, ["c"])], batch_id="n:1"
            )
            async with httpx.AsyncClient() as client:
                r = await client.post(_url(server), content=body, headers=headers)
                assert r.status_code == 200, r.text
                assert r.json() == {"accepted_chunks": 2}
                # a resend after a lost response stores nothing twice
                r = await client.post(_url(server), content=body, headers=headers)
                assert r.status_code == 200
                await settle(server)
                assert store.messages() == ["a", "b", "c"]
                assert store.appended == 6  # both deliveries reached the store, dedup kept 3
                assert server.api is not None
                host, port = server.api.address
                assert (await client.get(f"http://{host}:{port}/healthz")).status_code == 200
                ready = await client.get(f"http://{host}:{port}/readyz")
                assert ready.json()["status"] == "ready"
                metrics = (await client.get(f"http://{host}:{port}/metrics")).text
                assert 'kubetrail_receiver_requests_total{outcome="200",receiver="agent"} 2.0' in metrics
                assert "kubetrail_queue_bytes" in metrics
        finally:
            await server.stop()
        row = next(iter(store.rows.values()))
        assert row["orchestrator.cluster.name"] == "kubernetes"
        assert row["event.ingested"] is not None

    asyncio.run(go())


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda b, h: (b"\x00garbage", h), 400, "KT-PROTO"),
        (lambda b, h: (b, {**h, "Content-Type": "text/plain"}), 400, "KT-PROTO"),
        (lambda b, h: (b, {**h, "Content-Encoding": "br"}), 400, "KT-PROTO"),
        (lambda b, h: (b"x" * 5000, h), 413, "KT-LIMIT"),
        (lambda b, h: (msgpack.packb({"v": 1, "agent": "a", "chunks": [{"data": 1}]}), h), 400, "KT-PROTO"),
    ],
)
def test_agent_rejects_bad_requests(tmp_path: Path, mutate: object, status: int, code: str) -> None:
    store = MemoryStore()

    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg(limits={"max_body_bytes": 4096}), store)
        await server.start()
        try:
            body, headers = encode_request("node-a", [_chunk(0, ["a"])], "identity")
            body, headers = mutate(body, headers)  # type: ignore[operator]
            async with httpx.AsyncClient() as client:
                r = await client.post(_url(server), content=body, headers=headers)
                assert r.status_code == status, r.text
                assert r.json()["error"]["code"] == code
                # the server keeps serving good requests
                good, gh = encode_request("node-a", [_chunk(0, ["ok"])])
                assert (await client.post(_url(server), content=good, headers=gh)).status_code == 200
            await settle(server)
        finally:
            await server.stop()
        assert store.messages() == ["ok"]

    asyncio.run(go())


def test_decompression_bomb_is_413(tmp_path: Path) -> None:
    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg(limits={"max_decompressed_bytes": 100_000}))
        await server.start()
        try:
            body, headers = encode_request("node-a", [_chunk(0, ["x" * 1_000_000])], "zstd")
            assert len(body) < 2000
            async with httpx.AsyncClient() as client:
                r = await client.post(_url(server), content=body, headers=headers)
            assert r.status_code == 413
        finally:
            await server.stop()

    asyncio.run(go())


def test_tokens_are_required_and_roles_checked(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"name": "agents", "hash": hash_token("s3cret-agent"), "roles": ["agent"]},
                    {"name": "hunters", "hash": hash_token("s3cret-hunter"), "roles": ["hunter"]},
                ]
            }
        )
    )

    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg(tokens_file=str(tokens)))
        await server.start()
        try:
            async with httpx.AsyncClient() as client:
                for token, status in [
                    (None, 401),
                    ("wrong", 401),
                    ("s3cret-hunter", 403),
                    ("s3cret-agent", 200),
                ]:
                    body, headers = encode_request("node-a", [_chunk(0, ["a"])], token=token)
                    r = await client.post(_url(server), content=body, headers=headers)
                    assert r.status_code == status, (token, r.text)
        finally:
            await server.stop()

    asyncio.run(go())


def test_backpressure_429_with_retry_after(tmp_path: Path) -> None:
    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg(queue_max_bytes=300, retry_after_secs=2))
        await server.start()
        assert server.pipeline is not None
        server.pipeline.budget.used = 250  # bytes held by records still being processed
        try:
            body, headers = encode_request("node-a", [_chunk(0, ["y" * 100])], "identity")
            async with httpx.AsyncClient() as client:
                r = await client.post(_url(server), content=body, headers=headers)
                assert r.status_code == 429
                assert r.headers["Retry-After"] == "2"
                server.pipeline.budget.release(250)
                r = await client.post(_url(server), content=body, headers=headers)
                assert r.status_code == 200
        finally:
            await server.stop()

    asyncio.run(go())


def test_rate_limit_per_client(tmp_path: Path) -> None:
    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg(rate_limit={"requests_per_sec": 0.5, "burst": 2}))
        await server.start()
        try:
            body, headers = encode_request("node-a", [_chunk(0, ["a"])])
            async with httpx.AsyncClient() as client:
                codes = [
                    (await client.post(_url(server), content=body, headers=headers)).status_code
                    for _ in range(3)
                ]
                assert codes == [200, 200, 429]
        finally:
            await server.stop()

    asyncio.run(go())


def test_wal_replay_after_crash_and_truncation(tmp_path: Path) -> None:
    store = MemoryStore()

    async def crash_after_ack() -> None:
        server = make_server(tmp_path, _agent_cfg(store_flush_interval_secs=3600), store)
        await server.start()
        body, headers = encode_request("node-a", [_chunk(0, ["one", "two"])])
        async with httpx.AsyncClient() as client:
            assert (await client.post(_url(server), content=body, headers=headers)).status_code == 200
        # crash: nothing flushed or checkpointed; close sockets without draining
        for receiver in server.receivers.values():
            await receiver.stop()
        assert server.api is not None
        server.api.stop()
        assert server.wal is not None
        server.wal.close_sync()

    asyncio.run(crash_after_ack())
    fresh = MemoryStore()

    async def restart() -> None:
        server = make_server(tmp_path, _agent_cfg(), fresh)
        await server.start()
        try:
            assert server.replayed == 1
            await settle(server)
            assert fresh.messages() == ["one", "two"]
        finally:
            await server.stop()
        assert server.wal is not None
        assert server.wal.checkpoint_seq == 1

    asyncio.run(restart())

    async def third() -> None:
        server = make_server(tmp_path, _agent_cfg(), MemoryStore())
        await server.start()
        try:
            assert server.replayed == 0  # checkpointed: nothing to replay
        finally:
            await server.stop()

    asyncio.run(third())


def test_slow_http_body_is_408(tmp_path: Path) -> None:
    import socket

    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg(limits={"read_timeout_secs": 1}))
        await server.start()
        try:
            host, port = server.receivers["agent"].address  # type: ignore[attr-defined]

            def slow() -> bytes:
                with socket.create_connection((host, port)) as s:
                    s.settimeout(10)
                    s.sendall(
                        f"POST {PATH} HTTP/1.1\r\nHost: x\r\n"
                        "Content-Type: application/x-kubetrail-chunks+msgpack\r\n"
                        "Content-Length: 1000\r\n\r\nabc".encode()
                    )
                    return s.recv(200)

            reply = await asyncio.to_thread(slow)
            assert reply.startswith(b"HTTP/1.1 408"), reply
        finally:
            await server.stop()

    asyncio.run(go())


def test_fuzz_agent_endpoint_never_500(tmp_path: Path) -> None:
    """Random and mutated bodies over HTTP: always 200/400/413, and the server keeps serving."""
    import random

    rng = random.Random(7)
    good, headers = encode_request("node-a", [_chunk(0, ["fuzz"])], "zstd")
    bodies = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))) for _ in range(20)]
    for _ in range(20):
        mutated = bytearray(good)
        for _ in range(rng.randint(1, 5)):
            mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
        bodies.append(bytes(mutated[: rng.randint(1, len(mutated))]))

    async def go() -> None:
        server = make_server(tmp_path, _agent_cfg())
        await server.start()
        try:
            async with httpx.AsyncClient() as client:
                for body in bodies:
                    for encoding in ("zstd", "lz4", "identity"):
                        r = await client.post(
                            _url(server), content=body, headers={**headers, "Content-Encoding": encoding}
                        )
                        assert r.status_code in (200, 400, 413), (r.status_code, r.text)
                assert (await client.post(_url(server), content=good, headers=headers)).status_code == 200
        finally:
            await server.stop()

    asyncio.run(go())


def test_server_thread_for_demos(tmp_path: Path) -> None:
    from kubetrail.config import validate_config
    from kubetrail.server.app import ServerThread

    cfg, topology = validate_config(
        {
            "data_dir": str(tmp_path / "data"),
            "server": {"listen": "127.0.0.1:0"},
            "receivers": {"agent": {"type": "agent", "listen": "127.0.0.1:0"}},
        }
    )
    store = MemoryStore()
    with ServerThread(cfg, topology, store=store, parser=LineParserForThread()) as server:
        host, port = server.address("agent")
        body, headers = encode_request("node-a", [_chunk(0, ["threaded"])])
        assert httpx.post(f"http://{host}:{port}{PATH}", content=body, headers=headers).status_code == 200
        api_host, api_port = server.address("api")
        assert httpx.get(f"http://{api_host}:{api_port}/readyz").status_code == 200
    assert store.messages() == ["threaded"]  # stopping drained the pipeline into the store


def test_a_server_without_receivers_stops_at_once(tmp_path: Path) -> None:
    """A query-only server: stop() must not wait out the shutdown timeout for the API task."""
    from kubetrail.config import validate_config
    from kubetrail.server.app import KubetrailServer
    from kubetrail.store import Store
    from tests.server.helpers import LineParser

    cfg, topology = validate_config(
        {"data_dir": str(tmp_path / "data"), "server": {"listen": "127.0.0.1:0", "shutdown_timeout_secs": 30}}
    )
    server = KubetrailServer(cfg, topology, store=Store(tmp_path / "store"), parser=LineParser())

    async def go() -> float:
        await server.start()
        started = time.monotonic()
        await server.stop()
        return time.monotonic() - started

    assert asyncio.run(go()) < 10
