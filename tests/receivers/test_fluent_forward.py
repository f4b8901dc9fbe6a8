from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from fluent import asyncsender, sender
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kubetrail.errors import ProtocolError
from kubetrail.receivers.fluent_forward import ForwardReceiver, decode_frame_records, inspect_frame
from kubetrail.server.app import KubetrailServer
from kubetrail.server.settings import LimitsConfig
from tests.receivers.forward_client import (
    compressed_packed_forward,
    handshake,
    new_chunk_id,
    packed_forward,
    read_object,
)
from tests.server.helpers import MemoryStore, make_server, settle

K8S_RECORD = {
    "log": "GET /healthz 200\n",
    "stream": "stdout",
    "time": "2026-11-27T05:00:00.123456789Z",
    "kubernetes": {
        "pod_name": "web-7d4b9",
        "namespace_name": "shop",
        "pod_id": "0b8e-uid",
        "labels": {"app": "web"},
        "host": "node-3",
        "container_name": "nginx",
        "docker_id": "abc123",
        "container_hash": "sha256:deadbeef",
        "container_image": "nginx:1.27",
    },
}


def _cfg(**fwd: Any) -> dict[str, Any]:
    return {"receivers": {"fwd": {"type": "forward", "listen": "127.0.0.1:0", **fwd}}}


async def _with_server(
    tmp_path: Path, cfg: dict[str, Any], body: Any, store: MemoryStore | None = None
) -> None:
    server = make_server(tmp_path, cfg, store)
    await server.start()
    try:
        await body(server)
    finally:
        await server.stop()


def _addr(server: KubetrailServer) -> tuple[str, int]:
    receiver = server.receivers["fwd"]
    assert isinstance(receiver, ForwardReceiver)
    return receiver.address


def _send_and_ack(addr: tuple[str, int], frame: bytes) -> Any:
    with socket.create_connection(addr) as sock:
        sock.sendall(frame)
        return read_object(sock)


def test_fluent_logger_plain_and_async(tmp_path: Path) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        host, port = _addr(server)

        def send() -> None:
            s = sender.FluentSender("app", host=host, port=port, nanosecond_precision=True)
            for i in range(20):
                assert s.emit("web", {"message": f"plain {i}", "level": "WARN"}), s.last_error
            s.close()
            a = asyncsender.FluentSender("app", host=host, port=port)
            a.emit("k8s", K8S_RECORD)
            a.close()

        await asyncio.to_thread(send)
        for _ in range(100):
            await settle(server)
            if len(store.rows) == 21:
                break
            await asyncio.sleep(0.05)

    asyncio.run(_with_server(tmp_path, _cfg(), body, store))
    assert len(store.rows) == 21
    rows = {r["message"]: r for r in store.rows.values()}
    plain = rows["plain 3"]
    assert plain["log.level"] == "warning"
    assert plain["event.dataset"] == "forward"
    assert '"fluent.tag":"app.web"' in plain["attributes"]
    assert plain["@timestamp"].year >= 2026
    k8s = rows["GET /healthz 200\n"]
    assert k8s["kubernetes.pod.name"] == "web-7d4b9"
    assert k8s["kubernetes.namespace"] == "shop"
    assert k8s["kubernetes.pod.uid"] == "0b8e-uid"
    assert k8s["kubernetes.container.name"] == "nginx"
    assert k8s["container.image.name"] == "nginx:1.27"
    assert k8s["container.id"] == "abc123"
    assert k8s["host.name"] == "node-3"
    assert k8s["kubernetes.labels"] == '{"app":"web"}'
    assert k8s["stream"] == "stdout"
    assert "sha256:deadbeef" in k8s["attributes"]


class AckingFluentSender(sender.FluentSender):  # type: ignore[misc]
    """fluent-logger's sender with Fluentd's require_ack_response: a chunk option, then read the ack."""

    def _make_packet(self, label: str, timestamp: Any, data: Any) -> bytes:
        self.last_chunk = new_chunk_id()
        tag = f"{self.tag}.{label}" if label else self.tag
        packet = (tag, timestamp, data, {"chunk": self.last_chunk})
        return msgpack.packb(packet, **self.msgpack_kwargs)  # type: ignore[no-any-return]

    def emit_and_wait_ack(self, label: str, data: Any) -> Any:
        assert self.emit(label, data), self.last_error
        return read_object(self.socket)


def test_fluent_logger_with_acks(tmp_path: Path) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        host, port = _addr(server)

        def send() -> None:
            s = AckingFluentSender("app", host=host, port=port, nanosecond_precision=True)
            for i in range(5):
                ack = s.emit_and_wait_ack("acked", {"message": f"acked {i}"})
                assert ack == {"ack": s.last_chunk}
            s.close()

        await asyncio.to_thread(send)
        await settle(server)

    asyncio.run(_with_server(tmp_path, _cfg(), body, store))
    assert store.messages() == [f"acked {i}" for i in range(5)]


def test_fluent_bit_packed_and_compressed_forward(tmp_path: Path) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        addr = _addr(server)
        records = [{**K8S_RECORD, "log": f"packed {i}"} for i in range(50)]
        chunk = new_chunk_id()
        frame = packed_forward("kube.var.log.containers.web", records, chunk)
        assert await asyncio.to_thread(_send_and_ack, addr, frame) == {"ack": chunk}
        # a retry of the same chunk (lost ack) stores nothing twice
        assert await asyncio.to_thread(_send_and_ack, addr, frame) == {"ack": chunk}
        # Fluent Bit retries with a NEW chunk id but the same entries: still stored once
        retry_chunk = new_chunk_id()
        retry = packed_forward("kube.var.log.containers.web", records, retry_chunk)
        assert await asyncio.to_thread(_send_and_ack, addr, retry) == {"ack": retry_chunk}
        gz_chunk = new_chunk_id()
        gz = compressed_packed_forward(
            "kube.gz", [{"log": f"gz {i}"} for i in range(30)], gz_chunk, members=3
        )
        assert await asyncio.to_thread(_send_and_ack, addr, gz) == {"ack": gz_chunk}
        v15 = new_chunk_id()
        meta = packed_forward("kube.v15", [{"log": "with metadata"}], v15, metadata=True)
        assert await asyncio.to_thread(_send_and_ack, addr, meta) == {"ack": v15}
        # Forward mode with integer times, and PackedForward payload as str (old Fluentd)
        fwd = msgpack.packb(["fwd", [[1764220000, {"message": "fwd int time"}]], {"chunk": "c1"}])
        assert await asyncio.to_thread(_send_and_ack, addr, fwd) == {"ack": "c1"}
        await settle(server)

    asyncio.run(_with_server(tmp_path, _cfg(), body, store))
    messages = store.messages()
    assert sum(m.startswith("packed ") for m in messages) == 50
    assert sum(m.startswith("gz ") for m in messages) == 30
    assert "with metadata" in messages and "fwd int time" in messages
    assert store.appended == 50 * 3 + 30 + 1 + 1
    row = next(r for r in store.rows.values() if r["message"] == "packed 7")
    assert row["@timestamp"].timestamp() == pytest.approx(1764220000.000007, abs=1e-6)
    assert row["kubernetes.pod.name"] == "web-7d4b9"


def test_shared_key_handshake(tmp_path: Path) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        addr = _addr(server)

        def good() -> None:
            with socket.create_connection(addr) as sock:
                pong = handshake(sock, "s3cret", "fluent", "pw")
                assert pong[1] is True, pong
                sock.sendall(msgpack.packb(["t", 1764220000, {"message": "authed"}, {"chunk": "x"}]))
                assert read_object(sock) == {"ack": "x"}

        def bad(key: str, password: str) -> None:
            with socket.create_connection(addr) as sock:
                pong = handshake(sock, key, "fluent", password)
                assert pong[1] is False
                with pytest.raises((ConnectionError, OSError)):
                    sock.sendall(msgpack.packb(["t", 1, {"message": "nope"}]))
                    read_object(sock, timeout=2)

        await asyncio.to_thread(good)
        await asyncio.to_thread(bad, "wrong", "pw")
        await asyncio.to_thread(bad, "s3cret", "wrong")
        await settle(server)

    asyncio.run(_with_server(tmp_path, _cfg(shared_key="s3cret", users={"fluent": "pw"}), body, store))
    assert store.messages() == ["authed"]


def test_udp_heartbeat(tmp_path: Path) -> None:
    async def body(server: KubetrailServer) -> None:
        def beat() -> bytes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(b"\x00", _addr(server))
                return s.recv(16)

        assert await asyncio.to_thread(beat) == b"\x00"

    asyncio.run(_with_server(tmp_path, _cfg(), body))


BAD_STREAMS = [
    b"\xc1\xc1\xc1",  # never-used msgpack byte
    msgpack.packb({"not": "an array"}),
    msgpack.packb(["tag"]),
    msgpack.packb(["tag", b"\x93\x01", {"size": 1}]),  # truncated packed entry stream
    msgpack.packb(["tag", b"notgzip", {"compressed": "gzip"}]),
    msgpack.packb(["tag", [[1, {"a": 1}]], {"size": 5}]),  # size mismatch
    b"\xc6\x7f\xff\xff\xff" + b"x" * 100_000,  # declared 2 GiB bin
]


@pytest.mark.parametrize("garbage", BAD_STREAMS)
def test_malformed_frames_close_the_connection_others_are_served(tmp_path: Path, garbage: bytes) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        addr = _addr(server)

        def bad() -> None:
            with socket.create_connection(addr) as sock:
                sock.settimeout(5)
                try:
                    sock.sendall(garbage)
                    assert sock.recv(100) == b""  # closed by the server
                except ConnectionError:
                    pass

        def good() -> Any:
            return _send_and_ack(addr, msgpack.packb(["t", 1, {"message": "still served"}, {"chunk": "g"}]))

        started = time.monotonic()
        await asyncio.gather(asyncio.to_thread(bad), asyncio.to_thread(good))
        assert time.monotonic() - started < 4
        await settle(server)

    limits = {"max_frame_bytes": 65536, "read_timeout_secs": 1}
    asyncio.run(_with_server(tmp_path, {**_cfg(), "server": {"limits": limits}}, body, store))
    assert store.messages() == ["still served"]


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=8), st.binary(max_size=16)
)
_values = st.recursive(
    _scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_values, min_size=0, max_size=4))
@example(["", b"\xdd\x01\x00\x00\x00"])  # an array header claiming 16M entries, then nothing
def test_fuzz_inspect_frame(frame: list[Any]) -> None:
    limits = LimitsConfig()
    try:
        inspect_frame(frame, limits)
    except ProtocolError:
        return
    decode_frame_records(frame, limits)  # an accepted frame always decodes


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_packed_payload(payload: bytes) -> None:
    for option in ({"compressed": "gzip"}, {}):
        with contextlib.suppress(ProtocolError):
            inspect_frame(["t", payload, option], LimitsConfig(max_decompressed_bytes=1 << 20))


def test_slow_client_is_closed_and_idle_limit(tmp_path: Path) -> None:
    async def body(server: KubetrailServer) -> None:
        def stall() -> float:
            frame = msgpack.packb(["t", 1, {"message": "x" * 100}])
            with socket.create_connection(_addr(server)) as sock:
                sock.settimeout(10)
                sock.sendall(frame[:20])  # half a frame, then nothing
                started = time.monotonic()
                assert sock.recv(10) == b""
                return time.monotonic() - started

        waited = await asyncio.to_thread(stall)
        assert 0.5 < waited < 5

    limits = {"read_timeout_secs": 1, "idle_timeout_secs": 60}
    asyncio.run(_with_server(tmp_path, {**_cfg(), "server": {"limits": limits}}, body))


def test_full_queue_delays_acks_instead_of_dropping(tmp_path: Path) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        assert server.pipeline is not None
        budget = server.pipeline.budget
        budget.used = budget.capacity  # the pipeline is behind: the queue is full
        sock = await asyncio.to_thread(socket.create_connection, _addr(server))
        try:
            sock.settimeout(0.5)
            frame = msgpack.packb(["t", 1, {"message": "waited"}, {"chunk": "w"}])
            await asyncio.to_thread(sock.sendall, frame)
            with pytest.raises(TimeoutError):
                await asyncio.to_thread(sock.recv, 100)  # no ack while there is no room
            budget.release(budget.capacity)  # the pipeline caught up
            sock.settimeout(5)
            assert msgpack.unpackb(await asyncio.to_thread(sock.recv, 100)) == {"ack": "w"}
        finally:
            sock.close()
        metrics = server.metrics.render().decode()
        assert 'kubetrail_backpressure_total{kind="paused",receiver="fwd"} 1.0' in metrics

    asyncio.run(_with_server(tmp_path, {**_cfg(), "server": {"queue_max_bytes": 1000}}, body, store))
    assert store.messages() == ["waited"]


def test_nesting_limit() -> None:
    deep: Any = "leaf"
    for _ in range(80):
        deep = {"k": deep}
    with pytest.raises(ProtocolError):
        inspect_frame(["t", 1, {"deep": deep}], LimitsConfig(max_nesting_depth=64))
    inspect_frame(["t", 1, {"shallow": {"a": [1, 2]}}], LimitsConfig(max_nesting_depth=64))


def test_json_application_log_in_record_is_extracted(tmp_path: Path) -> None:
    store = MemoryStore()

    async def body(server: KubetrailServer) -> None:
        record = {
            "log": '{"level":"error","msg":"db down","user":"bob"}',
            "kubernetes": {"pod_name": "api-0"},
        }
        frame = msgpack.packb(["kube.api", 1764220000, record, {"chunk": "j"}])
        assert await asyncio.to_thread(_send_and_ack, _addr(server), frame) == {"ack": "j"}
        await settle(server)

    asyncio.run(_with_server(tmp_path, _cfg(), body, store))
    [row] = store.rows.values()
    assert row["message"] == "db down"
    assert row["log.level"] == "error"
    assert row["kubernetes.pod.name"] == "api-0"
    attributes = orjson.loads(row["attributes"])
    assert attributes["user"] == "bob" and attributes["fluent.tag"] == "kube.api"


def test_packed_forward_payload_as_str_type() -> None:
    """Old Fluentd sends the PackedForward entry stream as msgpack str (raw), not bin."""
    from kubetrail.receivers.fluent_forward import make_unpacker
    from tests.receivers.forward_client import entries_stream

    stream = entries_stream([{"log": "from str payload"}, {"log": "second"}])
    frame = msgpack.packb(["old.fluentd", stream, {"size": 2}], use_bin_type=False)  # bytes -> str type
    unpacker = make_unpacker(LimitsConfig())
    unpacker.feed(frame)
    obj = unpacker.unpack()
    assert isinstance(obj[1], str)  # non-UTF-8 bytes survive as surrogates
    info, records = decode_frame_records(obj, LimitsConfig())
    assert info.entries == 2
    assert [r["log"] for _, r in records] == ["from str payload", "second"]
    assert records[0][0] == 1764220000 * 1_000_000_000


def test_rate_limit_slows_a_stream_client(tmp_path: Path) -> None:
    async def body(server: KubetrailServer) -> None:
        def send() -> float:
            started = time.monotonic()
            with socket.create_connection(_addr(server)) as sock:
                for i in range(4):
                    sock.sendall(msgpack.packb(["t", 1, {"message": f"r{i}"}, {"chunk": f"c{i}"}]))
                acks = [read_object(sock) for _ in range(4)]
            assert [a["ack"] for a in acks] == ["c0", "c1", "c2", "c3"]
            return time.monotonic() - started

        elapsed = await asyncio.to_thread(send)
        assert elapsed >= 0.8  # burst 2, then 2 more at 2/s: slowed down, nothing refused

    server_cfg = {"rate_limit": {"requests_per_sec": 2, "burst": 2}}
    asyncio.run(_with_server(tmp_path, {**_cfg(), "server": server_cfg}, body))


def test_memory_stays_bounded_under_an_oversized_declared_frame(tmp_path: Path) -> None:
    import tracemalloc

    async def body(server: KubetrailServer) -> None:
        def flood() -> int:
            sent = 0
            with socket.create_connection(_addr(server)) as sock:
                sock.settimeout(5)
                sock.sendall(b"\xc6\x7f\xff\xff\xff")  # a bin declaring 2 GiB
                try:
                    while sent < 50 << 20:
                        sock.sendall(b"x" * 65536)
                        sent += 65536
                except OSError:
                    pass  # closed by the server at the frame limit
            return sent

        tracemalloc.start()
        try:
            sent = await asyncio.to_thread(flood)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert sent < 50 << 20  # the server closed the connection
        assert peak < 16 << 20, peak  # never buffered anywhere near the declared size

    limits = {"max_frame_bytes": 1 << 20}
    asyncio.run(_with_server(tmp_path, {**_cfg(), "server": {"limits": limits}}, body))
