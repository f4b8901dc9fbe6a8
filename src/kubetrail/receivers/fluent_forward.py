"""``forward``: the Fluentd Forward Protocol v1 over TCP and TLS, for Fluent Bit and Fluentd.

Modes: Message ``[tag, time, record, option?]``, Forward ``[tag, [[time, record], ...], option?]``,
PackedForward ``[tag, <bin|str of concatenated [time, record]>, option?]`` and
CompressedPackedForward (``option.compressed = "gzip"``, one or several gzip members). Times are
integers/floats (seconds) or EventTime (ext type 0: big-endian u32 seconds, u32 nanoseconds); the
v1.5 entry form ``[[time, metadata], record]`` is accepted (metadata kept in ``attributes``).

Each frame is checked before it is acknowledged (shape, option map, entry stream parseable, gzip
within ``max_decompressed_bytes``), written to the WAL *as received* and, when the option carries a
``chunk``, acknowledged with ``{"ack": chunk}`` after the fsync. Frames are not awaited one by one:
the connection keeps reading while earlier frames are fsynced and acks go out in order. When the
ingest queue is full the receiver stops reading (TCP pushes back) and the acks wait.

``shared_key`` enables the HELO/PING/PONG handshake (with ``users`` also username/password).
``heartbeat_udp`` answers Fluentd's UDP heartbeats on the same port. A malformed frame closes the
connection (a byte stream cannot be resynchronised); other connections are unaffected.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from pydantic import Field, model_validator

from kubetrail.components import receivers
from kubetrail.errors import LimitExceeded, ProtocolError
from kubetrail.receivers._context import ListenerConfig
from kubetrail.receivers._records import (
    MappedRecord,
    extract_message_payload,
    nesting_depth_exceeds,
    records_to_batch,
)
from kubetrail.receivers._stream import ClientGone, StreamReceiver
from kubetrail.schema import event_id_prefix
from kubetrail.server.pipeline import register_codec
from kubetrail.server.settings import LimitsConfig
from kubetrail.server.wal import WalRecord

__all__ = [
    "EventTime",
    "ForwardConfig",
    "ForwardFrame",
    "ForwardReceiver",
    "decode_frame_records",
    "gunzip_members",
    "inspect_frame",
    "make_unpacker",
]


class EventTime(int):
    """An EventTime (ext type 0) as nanoseconds since the epoch; plain ints are seconds."""


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        sec, nsec = struct.unpack(">II", data)
        return EventTime(sec * 1_000_000_000 + nsec)
    return msgpack.ExtType(code, data)


def make_unpacker(limits: LimitsConfig, max_buffer: int | None = None) -> msgpack.Unpacker:
    """A streaming unpacker bounded by the limits (frame size, container sizes)."""
    return msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",  # PackedForward payloads sent as str keep their bytes
        strict_map_key=False,
        ext_hook=_ext_hook,
        max_buffer_size=max_buffer or limits.max_frame_bytes,
        max_array_len=limits.max_array_len,
        max_map_len=limits.max_map_len,
        max_str_len=limits.max_frame_bytes,
        max_bin_len=limits.max_frame_bytes,
        max_ext_len=1024,
    )


def gunzip_members(data: bytes, max_bytes: int) -> bytes:
    """Decompress one or more concatenated gzip members, never producing more than ``max_bytes``."""
    out: list[bytes] = []
    total = 0
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            part = d.decompress(data, max_bytes - total + 1)
        except zlib.error as exc:
            raise ProtocolError(f"bad gzip payload: {exc}") from None
        total += len(part)
        if total > max_bytes or d.unconsumed_tail:
            raise LimitExceeded("decompressed payload too large", max_decompressed_bytes=max_bytes)
        if not d.eof:
            raise ProtocolError("truncated gzip payload")
        out.append(part)
        data = d.unused_data
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class ForwardFrame:
    tag: str
    mode: str  # message, forward, packed, compressed
    entries: int  # events in the frame
    chunk: str | None
    payload: bytes | None  # PackedForward entry stream (decompressed)


def _payload_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def _count_entries(payload: bytes, limits: LimitsConfig) -> int:
    unpacker = make_unpacker(limits, max_buffer=max(len(payload), 1))
    unpacker.feed(payload)
    count = end = 0
    while True:
        try:
            unpacker.skip()
        except msgpack.OutOfData:
            break
        except Exception as exc:
            raise ProtocolError(f"bad PackedForward entry stream: {type(exc).__name__}: {exc}") from None
        count += 1
        end = unpacker.tell()
    # after OutOfData, tell() may count the bytes of the unfinished entry: use the last whole entry's end
    if end != len(payload):
        raise ProtocolError("truncated PackedForward entry stream", entries=count)
    return count


def inspect_frame(obj: Any, limits: LimitsConfig) -> ForwardFrame:
    """Check a decoded frame's shape before acknowledging it; raises ProtocolError / LimitExceeded."""
    if not isinstance(obj, list) or len(obj) < 2 or not isinstance(obj[0], str):
        raise ProtocolError("frame must be an array [tag, ...]")
    tag, second = obj[0], obj[1]
    option: Any = None
    if isinstance(second, list):
        mode, entries, payload = "forward", len(second), None
        if len(obj) > 3:
            raise ProtocolError("Forward frame has more than 3 elements")
        option = obj[2] if len(obj) == 3 else None
        for entry in second:
            if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], dict):
                raise ProtocolError("Forward entry must be [time, record]")
        if nesting_depth_exceeds(second, limits.max_nesting_depth + 2):
            raise LimitExceeded("record nests too deeply", max_nesting_depth=limits.max_nesting_depth)
    elif isinstance(second, bytes | str):
        if len(obj) > 3:
            raise ProtocolError("PackedForward frame has more than 3 elements")
        option = obj[2] if len(obj) == 3 else None
        payload = _payload_bytes(second)
        mode = "packed"
        if isinstance(option, dict) and option.get("compressed") is not None:
            if option.get("compressed") not in ("gzip", "text"):
                raise ProtocolError(f"unsupported compression {option.get('compressed')!r}")
            if option.get("compressed") == "gzip":
                payload = gunzip_members(payload, limits.max_decompressed_bytes)
                mode = "compressed"
        entries = _count_entries(payload, limits)
    elif isinstance(second, int | float) and not isinstance(second, bool):
        if len(obj) not in (3, 4) or not isinstance(obj[2], dict):
            raise ProtocolError("Message frame must be [tag, time, record, option?]")
        mode, entries, payload = "message", 1, None
        option = obj[3] if len(obj) == 4 else None
        if nesting_depth_exceeds(obj[2], limits.max_nesting_depth):
            raise LimitExceeded("record nests too deeply", max_nesting_depth=limits.max_nesting_depth)
    else:
        raise ProtocolError(f"unknown frame mode (second element is {type(second).__name__})")
    if option is not None and not isinstance(option, dict):
        raise ProtocolError("option must be a map")
    chunk = option.get("chunk") if option else None
    if chunk is not None and not isinstance(chunk, str):
        raise ProtocolError("option.chunk must be a string")
    size = option.get("size") if option else None
    if size is not None and (not isinstance(size, int) or size != entries):
        raise ProtocolError("option.size does not match the number of entries", size=size, entries=entries)
    return ForwardFrame(tag, mode, entries, chunk, payload)


def _time_ns(value: Any) -> int | None:
    if isinstance(value, EventTime):
        return int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 1_000_000_000
    if isinstance(value, float):
        return int(value * 1e9)
    return None


def _entries(obj: list[Any], frame: ForwardFrame, limits: LimitsConfig) -> Iterator[Any]:
    if frame.mode == "message":
        yield [obj[1], obj[2]]
    elif frame.mode == "forward":
        yield from obj[1]
    else:
        assert frame.payload is not None
        unpacker = make_unpacker(limits, max_buffer=max(len(frame.payload), 1))
        unpacker.feed(frame.payload)
        yield from unpacker


def decode_frame_records(obj: Any, limits: LimitsConfig) -> tuple[ForwardFrame, list[MappedRecord]]:
    """A frame's events as (time ns, record); bad entries become records flagged in attributes."""
    frame = inspect_frame(obj, limits)
    records: list[MappedRecord] = []
    for entry in _entries(obj, frame, limits):
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict):
            if frame.mode in ("packed", "compressed") and nesting_depth_exceeds(
                entry[1], limits.max_nesting_depth
            ):
                records.append(
                    (None, {"fluent.tag": frame.tag, "fluent.bad_entry": "record nests too deeply"})
                )
                continue
            time, record = entry
            if isinstance(time, list) and len(time) == 2:  # v1.5: [[time, metadata], record]
                time, metadata = time
                record = {**record, "fluent.metadata": metadata}
            records.append((_time_ns(time), {**record, "fluent.tag": frame.tag}))
        else:
            records.append((None, {"fluent.tag": frame.tag, "fluent.bad_entry": repr(entry)[:2048]}))
    return frame, records


@register_codec("forward")
def decode_forward_record(record: WalRecord, hint: Any) -> Any:
    """WAL codec ``forward``: one raw frame as received."""
    # accepted already: decode with the decoders' own bounds, not the (configurable) receive limits
    limits = LimitsConfig(
        max_decompressed_bytes=1 << 34,
        max_frame_bytes=max(len(record.data), 1 << 20),
        max_array_len=1 << 31,
        max_map_len=1 << 31,
        max_nesting_depth=1000,
    )
    obj = hint
    if obj is None:
        unpacker = make_unpacker(limits, max_buffer=max(len(record.data), 1))
        unpacker.feed(record.data)
        obj = unpacker.unpack()
    frame, records = decode_frame_records(obj, limits)
    if frame.payload is not None:
        # PackedForward: the entry stream itself names the events. Fluent Bit makes a new chunk id
        # when it retries after a lost ack, but resends the same entries (with their ns EventTimes),
        # so hashing the stream keeps a retry's ids equal to the first delivery's.
        digest = hashlib.blake2b(frame.payload, digest_size=16).hexdigest()
        prefix = event_id_prefix("forward", record.source, frame.tag, "packed", digest)
    elif frame.chunk:  # Fluentd keeps the chunk id across retries: the same chunk gets the same ids
        prefix = event_id_prefix("forward", record.source, frame.tag, frame.chunk)
    else:  # stable under WAL replay
        prefix = event_id_prefix("forward", record.source, "wal", record.seq)
    batch = extract_message_payload(
        records_to_batch(records, id_prefix=prefix, dataset="forward", module="forward")
    )
    bad = [i for i, (_, r) in enumerate(records) if "fluent.bad_entry" in r]
    if bad:
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = pa.array([i in set(bad) for i in range(len(records))])
        idx = batch.schema.get_field_index("event.parse_error")
        col = pc.if_else(mask, pa.scalar("forward_bad_entry"), batch.column(idx))
        batch = batch.set_column(idx, batch.schema.field(idx), col)
    return batch


class ForwardConfig(ListenerConfig):
    """Options of ``forward``."""

    listen: str = Field("127.0.0.1:24224", description="TCP address (UDP heartbeats on the same port).")
    shared_key: str | None = Field(None, description="Require the HELO/PING/PONG handshake with this key.")
    users: dict[str, str] = Field(
        default_factory=dict, description="username -> password (needs shared_key)."
    )
    self_hostname: str = Field("kubetrail", description="Hostname announced in PONG.")
    heartbeat_udp: bool = Field(True, description="Answer Fluentd's UDP heartbeats.")

    @model_validator(mode="after")
    def _users_need_shared_key(self) -> ForwardConfig:
        if self.users and not self.shared_key:
            raise ValueError("users (username/password auth) need shared_key: both travel in the handshake")
        return self


class _Heartbeat(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(b"\x00", addr)


def _sha512_hex(*parts: Any) -> str:
    h = hashlib.sha512()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


@receivers.register("forward")
class ForwardReceiver(StreamReceiver[ForwardConfig]):
    Config = ForwardConfig

    def __init__(self, config: ForwardConfig, name: str = "") -> None:
        super().__init__(config, name)
        self._udp: asyncio.DatagramTransport | None = None

    async def start_extra(self, host: str, port: int) -> None:
        if self.config.heartbeat_udp:
            bound_port = self.address[1]
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(_Heartbeat, local_addr=(host, bound_port))
            self._udp = transport

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        await super().stop()

    async def _next_object(
        self, reader: asyncio.StreamReader, unpacker: msgpack.Unpacker, state: list[int]
    ) -> Any:
        """Read until one whole object is available (used during the handshake)."""
        while True:
            try:
                obj = unpacker.unpack()
                state[0] = unpacker.tell()
                return obj
            except msgpack.OutOfData:
                data = await self.read_some(reader, mid_frame=True)
                unpacker.feed(data)

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, unpacker: msgpack.Unpacker
    ) -> int:
        cfg = self.config
        assert cfg.shared_key is not None
        nonce = os.urandom(16)
        auth_salt = os.urandom(16) if cfg.users else b""
        writer.write(msgpack.packb(["HELO", {"nonce": nonce, "auth": auth_salt, "keepalive": True}]))
        await writer.drain()
        state = [0]
        ping = await self._next_object(reader, unpacker, state)
        reason = ""
        if not (isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING"):
            reason = "malformed PING"
        else:
            _, hostname, salt, digest, username, pw_digest = ping
            if digest != _sha512_hex(salt, hostname, nonce, cfg.shared_key):
                reason = "shared_key mismatch"
            elif cfg.users:
                password = cfg.users.get(str(username))
                if password is None or pw_digest != _sha512_hex(auth_salt, username, password):
                    reason = "username/password mismatch"
        if reason:
            writer.write(msgpack.packb(["PONG", False, reason, cfg.self_hostname, ""]))
            await writer.drain()
            assert self.ctx is not None
            self.ctx.metrics.rejected.labels(self.name, "KT-AUTH").inc()
            raise ClientGone(reason)
        own = _sha512_hex(salt, cfg.self_hostname, nonce, cfg.shared_key)
        writer.write(msgpack.packb(["PONG", True, "", cfg.self_hostname, own]))
        await writer.drain()
        return state[0]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.ctx is not None
        limits = self.limits
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else "unknown"
        unpacker = make_unpacker(limits, max_buffer=limits.max_frame_bytes + self.read_size)
        buf = bytearray()
        base = 0  # stream offset of buf[0]
        consumed = 0  # stream offset just after the last whole frame
        if self.config.shared_key:
            consumed = base = await self._handshake(reader, writer, unpacker)
        acks: asyncio.Queue[tuple[asyncio.Future[int], str] | None] = asyncio.Queue()
        acker = asyncio.ensure_future(self._send_acks(acks, writer))
        try:
            while True:
                data = await self.read_some(reader, mid_frame=base + len(buf) > consumed)
                if acker.done():
                    raise ClientGone("ack writer failed")
                buf += data
                try:
                    unpacker.feed(data)
                except msgpack.BufferFull:
                    raise self._reject(
                        LimitExceeded("frame too large", max_frame_bytes=limits.max_frame_bytes)
                    ) from None
                while True:
                    try:
                        obj = unpacker.unpack()
                    except msgpack.OutOfData:
                        break
                    except Exception as exc:
                        raise self._reject(
                            ProtocolError(f"malformed msgpack: {type(exc).__name__}: {exc}")
                        ) from None
                    end = unpacker.tell()
                    raw = bytes(buf[consumed - base : end - base])
                    consumed = end
                    try:
                        frame = inspect_frame(obj, limits)
                    except ProtocolError as exc:
                        raise self._reject(exc) from None
                    await self.ctx.wait_rate(self.name, peer)
                    durable = await self.ctx.enqueue(self.name, f"forward+{frame.mode}", raw, obj, wait=True)
                    self.ctx.metrics.requests.labels(self.name, "ok").inc()
                    if frame.chunk is not None:
                        acks.put_nowait((durable, frame.chunk))
                del buf[: consumed - base]
                base = consumed
        finally:
            acks.put_nowait(None)
            try:
                await asyncio.wait_for(acker, timeout=10)
            except Exception:
                acker.cancel()

    def _reject(self, exc: ProtocolError) -> ClientGone:
        assert self.ctx is not None
        self.ctx.metrics.rejected.labels(self.name, exc.code).inc()
        return ClientGone(str(exc))

    async def _send_acks(
        self, acks: asyncio.Queue[tuple[asyncio.Future[int], str] | None], writer: asyncio.StreamWriter
    ) -> None:
        """Acknowledge chunks in order, each once its WAL record is fsynced."""
        while True:
            item = await acks.get()
            if item is None:
                return
            durable, chunk = item
            await durable  # a WAL failure raises here: no ack, the connection closes, the client retries
            writer.write(msgpack.packb({"ack": chunk}))
            await writer.drain()
