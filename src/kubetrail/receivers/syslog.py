"""``syslog``: RFC 5424 / RFC 3164 over UDP, TCP and TLS (RFC 5425).

TCP framing (RFC 6587) is detected per message: octet counting (``LEN SP MSG``, what rsyslog's
``TCP_Framing="octet-counted"`` and RFC 5425 use) when the frame starts with a digit, otherwise
newline-terminated ("non-transparent") framing. A frame longer than ``max_frame_bytes`` closes the
connection. UDP (``udp: true``, plain listeners only): one message per datagram.

The receiver only frames; the messages of one read go to the WAL as one record and are parsed after
the ack by the formats' syslog parser (``parse_syslog_messages``), so RFC 5424 and 3164 are told
apart per message. Event ids: TCP — connection id + byte offset of the message in the stream; UDP —
batch id + index; both are in the WAL record, so replay yields the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import msgpack
import pyarrow as pa
from pydantic import Field

from kubetrail.chunk import Origin
from kubetrail.components import receivers
from kubetrail.errors import KubetrailError, LimitExceeded
from kubetrail.receivers._context import ListenerConfig
from kubetrail.receivers._stream import ClientGone, StreamReceiver
from kubetrail.server.pipeline import register_codec
from kubetrail.server.wal import WalRecord

__all__ = ["SyslogConfig", "SyslogReceiver", "frame_messages"]

_MAX_LEN_DIGITS = 10


def frame_messages(buf: bytes | bytearray, max_frame: int) -> tuple[list[bytes], list[int], int]:
    """Cut the complete frames at the start of ``buf``: (messages, their offsets in buf, bytes consumed)."""
    messages: list[bytes] = []
    offsets: list[int] = []
    pos = 0
    n = len(buf)
    while pos < n:
        first = buf[pos]
        if 0x30 <= first <= 0x39:  # octet counting
            space = buf.find(b" ", pos, pos + _MAX_LEN_DIGITS + 1)
            if space < 0:
                if n - pos > _MAX_LEN_DIGITS:
                    raise LimitExceeded("bad octet count", offset=pos)
                break
            digits = bytes(buf[pos:space])
            if not digits.isdigit():
                raise LimitExceeded("bad octet count", offset=pos)
            length = int(digits)
            if length > max_frame:
                raise LimitExceeded("syslog frame too large", declared=length, max_frame_bytes=max_frame)
            end = space + 1 + length
            if end > n:
                break
            messages.append(bytes(buf[space + 1 : end]))
            offsets.append(pos)
            pos = end
        else:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if n - pos > max_frame:
                    raise LimitExceeded("syslog line too long", max_frame_bytes=max_frame)
                break
            if nl > pos:
                messages.append(bytes(buf[pos:nl]))
                offsets.append(pos)
            pos = nl + 1
    return messages, offsets, pos


def _record(batch_id: str, offsets: list[int], messages: list[bytes]) -> bytes:
    return msgpack.packb({"b": batch_id, "o": offsets, "m": messages}, use_bin_type=True)  # type: ignore[no-any-return]


@register_codec("syslog")
def decode_syslog_record(record: WalRecord, hint: Any) -> pa.RecordBatch:
    """WAL codec ``syslog+<peer>``: framed messages with their stream offsets."""
    from kubetrail.formats.syslog import parse_syslog_messages

    doc = msgpack.unpackb(record.data, raw=False)
    peer = record.codec.partition("+")[2] or "unknown"
    origin = Origin(node=peer, source="syslog", receiver=record.source, batch_id=doc["b"])
    messages = pa.array(doc["m"], type=pa.binary())
    return parse_syslog_messages(messages, origin, offsets=pa.array(doc["o"], type=pa.int64()))


class SyslogConfig(ListenerConfig):
    """Options of ``syslog``."""

    listen: str = Field("127.0.0.1:6514", description="TCP (or TLS) address.")
    udp: bool = Field(False, description="Also receive UDP datagrams on the same port (plain only).")


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.receiver.queue_datagram(data, str(addr[0]))


@receivers.register("syslog")
class SyslogReceiver(StreamReceiver[SyslogConfig]):
    Config = SyslogConfig

    def __init__(self, config: SyslogConfig, name: str = "") -> None:
        super().__init__(config, name)
        self._udp: asyncio.DatagramTransport | None = None
        self._datagrams: dict[str, list[bytes]] = {}
        self._udp_flusher: asyncio.Task[None] | None = None

    async def start_extra(self, host: str, port: int) -> None:
        if self.config.udp and self.config.tls is None:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(host, self.address[1])
            )
            self._udp = transport
            self._udp_flusher = loop.create_task(self._flush_datagrams_forever())

    def queue_datagram(self, data: bytes, peer: str) -> None:
        self._datagrams.setdefault(peer, []).append(data.rstrip(b"\r\n\x00"))

    async def _flush_datagrams_forever(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            await self._flush_datagrams()

    async def _flush_datagrams(self) -> None:
        assert self.ctx is not None
        pending, self._datagrams = self._datagrams, {}
        for peer, messages in pending.items():
            payload = _record(uuid.uuid4().hex, list(range(len(messages))), messages)
            try:  # UDP cannot push back: a full queue drops, counted, never silently
                await self.ctx.enqueue(self.name, f"syslog+{peer}", payload, wait=False)
                self.ctx.metrics.requests.labels(self.name, "udp").inc(len(messages))
            except KubetrailError as exc:
                self.ctx.metrics.rejected.labels(self.name, exc.code).inc(len(messages))

    async def stop(self) -> None:
        if self._udp_flusher is not None:
            self._udp_flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._udp_flusher
            await self._flush_datagrams()
        if self._udp is not None:
            self._udp.close()
        await super().stop()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.ctx is not None
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else "unknown"
        conn_id = uuid.uuid4().hex
        buf = bytearray()
        stream_offset = 0
        max_frame = self.limits.max_frame_bytes
        while True:
            try:
                data = await self.read_some(reader, mid_frame=bool(buf))
            except ClientGone:
                if buf.strip():  # a last newline-framed message without its newline
                    buf += b"\n"
                    await self._submit(conn_id, peer, buf, stream_offset, max_frame)
                raise
            buf += data
            consumed = await self._submit(conn_id, peer, buf, stream_offset, max_frame)
            del buf[:consumed]
            stream_offset += consumed

    async def _submit(self, conn_id: str, peer: str, buf: bytearray, base: int, max_frame: int) -> int:
        assert self.ctx is not None
        try:
            messages, offsets, consumed = frame_messages(buf, max_frame)
        except LimitExceeded as exc:
            self.ctx.metrics.rejected.labels(self.name, exc.code).inc()
            raise ClientGone(str(exc)) from None
        if messages:
            payload = _record(conn_id, [base + o for o in offsets], messages)
            await self.ctx.wait_rate(self.name, peer)
            await self.ctx.enqueue(self.name, f"syslog+{peer}", payload, wait=True)
            self.ctx.metrics.requests.labels(self.name, "ok").inc(len(messages))
        return consumed
