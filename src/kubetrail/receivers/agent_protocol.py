"""The wire format between the kubetrail agent and the server's agent endpoint (both sides import it).

    POST /api/v1/agent/chunks
    Authorization: Bearer <token>
    Content-Type: application/x-kubetrail-chunks+msgpack
    Content-Encoding: zstd | lz4 | identity
    X-Kubetrail-Batch-Id: <agent-id>:<seq>

    body (after decompression): msgpack map
        {"v": 1, "agent": "<node>", "chunks": [{"origin": Origin.to_dict(), "data": <bin>}, ...]}

Responses: 200 ``{"accepted_chunks": n}`` only after the server's write-ahead log is fsynced; 429/503
with ``Retry-After`` under backpressure; 400 ``{"error": {"code": "KT-PROTO", "message": ...}}`` for a
malformed body; 401/403 for a missing/unknown token; 413 when the declared or decompressed size is too
large. Resending a batch is harmless: event ids derive from the chunk origins, the store dedups them.

The decoder bounds the decompressed size (zstd/lz4 bombs) and the msgpack container sizes, and checks
the shape of every chunk, so the server can reject a bad request *before* acknowledging it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lz4.frame
import msgpack
import zstandard

from kubetrail.chunk import Chunk, FileIdentity, Origin
from kubetrail.errors import LimitExceeded, ProtocolError

__all__ = [
    "BATCH_ID_HEADER",
    "CONTENT_TYPE",
    "ENCODINGS",
    "PATH",
    "PROTOCOL_VERSION",
    "AgentRequest",
    "decode_request",
    "decompress",
    "encode_request",
]

PATH = "/api/v1/agent/chunks"
CONTENT_TYPE = "application/x-kubetrail-chunks+msgpack"
BATCH_ID_HEADER = "X-Kubetrail-Batch-Id"
PROTOCOL_VERSION = 1
ENCODINGS = ("zstd", "lz4", "identity")
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024

_ORIGIN_FIELDS = frozenset(Origin.__dataclass_fields__)
_FILE_FIELDS = frozenset(FileIdentity.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """A decoded request: the sending agent (node name) and its chunks."""

    agent: str
    chunks: list[Chunk]

    @property
    def data_bytes(self) -> int:
        return sum(len(c.data) for c in self.chunks)


def encode_request(
    agent: str,
    chunks: Sequence[Chunk],
    encoding: str = "zstd",
    *,
    batch_id: str | None = None,
    token: str | None = None,
    level: int = 3,
) -> tuple[bytes, dict[str, str]]:
    """Build the body and headers of one request (the agent adds nothing else).

    ``batch_id`` (``<agent-id>:<seq>``) and ``token`` add their headers when given.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r} (one of {', '.join(ENCODINGS)})")
    payload = msgpack.packb(
        {
            "v": PROTOCOL_VERSION,
            "agent": agent,
            "chunks": [{"origin": c.origin.to_dict(), "data": bytes(c.data)} for c in chunks],
        },
        use_bin_type=True,
    )
    if encoding == "zstd":
        body = zstandard.ZstdCompressor(level=level).compress(payload)
    elif encoding == "lz4":
        body = lz4.frame.compress(payload)
    else:
        body = payload
    headers = {"Content-Type": CONTENT_TYPE, "Content-Encoding": encoding}
    if batch_id is not None:
        headers[BATCH_ID_HEADER] = batch_id
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return body, headers


def decompress(body: bytes, encoding: str, max_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> bytes:
    """Decompress ``body`` without ever producing more than ``max_bytes`` (bombs raise LimitExceeded)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        out = body
    elif encoding == "zstd":
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
            out = reader.read(max_bytes + 1)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"bad zstd body: {exc}", encoding=encoding) from None
    elif encoding == "lz4":
        try:
            dec = lz4.frame.LZ4FrameDecompressor()
            out = dec.decompress(body, max_length=max_bytes + 1)
            if not dec.eof and len(out) <= max_bytes:
                raise ProtocolError("truncated lz4 body", encoding=encoding)
        except RuntimeError as exc:
            raise ProtocolError(f"bad lz4 body: {exc}", encoding=encoding) from None
    else:
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r} (use {', '.join(ENCODINGS)})")
    if len(out) > max_bytes:
        raise LimitExceeded("decompressed body too large", max_decompressed_bytes=max_bytes)
    return out


def _origin(raw: Any, index: int) -> Origin:
    if not isinstance(raw, dict):
        raise ProtocolError("chunk origin must be a map", chunk=index)
    unknown = set(raw) - _ORIGIN_FIELDS
    if unknown:
        raise ProtocolError(f"unknown origin keys {sorted(map(str, unknown))}", chunk=index)
    if not isinstance(raw.get("node"), str) or not isinstance(raw.get("source"), str):
        raise ProtocolError("origin needs string 'node' and 'source'", chunk=index)
    file = raw.get("file")
    if file is not None and (not isinstance(file, dict) or set(file) != _FILE_FIELDS):
        raise ProtocolError("origin.file must be {dev, inode, fingerprint}", chunk=index)
    metadata = raw.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise ProtocolError("origin.metadata must map strings to strings", chunk=index)
    offset = raw.get("offset", 0)
    if not isinstance(offset, int) or offset < 0:
        raise ProtocolError("origin.offset must be a non-negative integer", chunk=index)
    try:
        return Origin.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"bad origin: {exc}", chunk=index) from None


def decode_request(
    body: bytes,
    content_encoding: str = "identity",
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    max_chunks: int = 100_000,
) -> AgentRequest:
    """Decompress and validate a request body; raises ProtocolError / LimitExceeded with context."""
    raw = decompress(body, content_encoding, max_decompressed_bytes)
    try:
        doc = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            max_array_len=max_chunks,
            max_map_len=10_000,
            max_str_len=len(raw),
            max_bin_len=len(raw),
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(f"body is not one msgpack document: {exc}") from None
    except Exception as exc:  # msgpack raises a few other types for hostile input
        raise ProtocolError(f"body is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("body must be a msgpack map")
    if doc.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {doc.get('v')!r} (expected {PROTOCOL_VERSION})")
    agent = doc.get("agent")
    chunks_raw = doc.get("chunks")
    if not isinstance(agent, str) or not isinstance(chunks_raw, list):
        raise ProtocolError("body needs 'agent' (string) and 'chunks' (array)")
    chunks: list[Chunk] = []
    for index, item in enumerate(chunks_raw):
        if not isinstance(item, dict) or not isinstance(item.get("data"), bytes):
            raise ProtocolError("chunk must be {origin, data: bin}", chunk=index)
        chunks.append(Chunk(_origin(item.get("origin"), index), item["data"]))
    return AgentRequest(agent, chunks)
