from __future__ import annotations

import contextlib

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.errors import LimitExceeded, ProtocolError
from kubetrail.receivers.agent_protocol import CONTENT_TYPE, decode_request, encode_request


def _chunks() -> list[Chunk]:
    origin = Origin(
        node="node-1",
        source="container",
        path="/var/log/pods/ns_pod_uid/c/0.log",
        file=FileIdentity(1, 2, "ab"),
        offset=100,
        metadata={"kubernetes.labels": '{"app":"x"}'},
    )
    return [Chunk(origin, b"line one\nline two\n"), Chunk(Origin(node="node-1", source="journald"), b"{}\n")]


@pytest.mark.parametrize("encoding", ["zstd", "lz4", "identity"])
def test_round_trip(encoding: str) -> None:
    body, headers = encode_request("node-1", _chunks(), encoding, batch_id="a:1", token="t")
    assert headers["Content-Type"] == CONTENT_TYPE
    assert headers["Content-Encoding"] == encoding
    assert headers["X-Kubetrail-Batch-Id"] == "a:1"
    assert headers["Authorization"] == "Bearer t"
    req = decode_request(body, encoding)
    assert req.agent == "node-1"
    assert req.chunks == _chunks()


def test_zstd_bomb_is_rejected() -> None:
    body = zstandard.ZstdCompressor().compress(b"\x00" * 10_000_000)
    with pytest.raises(LimitExceeded):
        decode_request(body, "zstd", max_decompressed_bytes=1_000_000)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"v": 2, "agent": "a", "chunks": []},
        {"v": 1, "agent": 3, "chunks": []},
        {"v": 1, "agent": "a", "chunks": [{"origin": {}, "data": b""}]},
        {"v": 1, "agent": "a", "chunks": [{"origin": {"node": "n", "source": "s", "evil": 1}, "data": b""}]},
        {"v": 1, "agent": "a", "chunks": [{"origin": {"node": "n", "source": "s"}, "data": "str"}]},
        {"v": 1, "agent": "a", "chunks": [{"origin": {"node": "n", "source": "s", "offset": -1}, "data": 0}]},
    ],
)
def test_malformed_documents(doc: object) -> None:
    with pytest.raises(ProtocolError):
        decode_request(msgpack.packb(doc), "identity")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.sampled_from(["zstd", "lz4", "identity", "gzip"]))
def test_fuzz_garbage_raises_protocol_error(data: bytes, encoding: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_request(data, encoding, max_decompressed_bytes=1 << 20)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=200))
def test_fuzz_truncated_bodies(cut: int) -> None:
    body, _ = encode_request("node-1", _chunks(), "identity")
    with pytest.raises(ProtocolError):
        decode_request(body[: max(0, len(body) - cut)], "identity")
