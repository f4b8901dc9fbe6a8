"""Frames built byte-for-byte the way Fluent Bit's out_forward and Fluentd write them."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import socket
import struct
import weakref
from typing import Any

import msgpack


def event_time(sec: int, nsec: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", sec, nsec))


def entries_stream(records: list[dict[str, Any]], sec: int = 1764220000, metadata: bool = False) -> bytes:
    """Concatenated [time, record] entries (Fluent Bit: EventTime; v1.5 form with metadata)."""
    out = b""
    for i, record in enumerate(records):
        t = event_time(sec, i * 1000)
        head: Any = [t, {}] if metadata else t
        out += msgpack.packb([head, record], use_bin_type=True)
    return out


def packed_forward(tag: str, records: list[dict[str, Any]], chunk: str | None = None, **kw: Any) -> bytes:
    stream = entries_stream(records, **kw)
    option: dict[str, Any] = {"size": len(records), "fluent_signal": 0}
    if chunk:
        option["chunk"] = chunk
    return msgpack.packb([tag, stream, option], use_bin_type=True)


def compressed_packed_forward(tag: str, records: list[dict[str, Any]], chunk: str, members: int = 2) -> bytes:
    """Fluent Bit's ``compress gzip``: the entry stream gzipped; here split over several members."""
    per = max(1, len(records) // members)
    parts = [records[i : i + per] for i in range(0, len(records), per)]
    payload = b"".join(gzip.compress(entries_stream(p)) for p in parts)
    option = {"size": len(records), "chunk": chunk, "compressed": "gzip", "fluent_signal": 0}
    return msgpack.packb([tag, payload, option], use_bin_type=True)


def new_chunk_id() -> str:
    return base64.b64encode(os.urandom(16)).decode()


_UNPACKERS: weakref.WeakKeyDictionary[socket.socket, msgpack.Unpacker] = weakref.WeakKeyDictionary()


def read_object(sock: socket.socket, timeout: float = 10.0) -> Any:
    """The next msgpack object from ``sock`` (objects that arrived together are kept for later calls)."""
    sock.settimeout(timeout)
    unpacker = _UNPACKERS.setdefault(sock, msgpack.Unpacker(raw=False))
    while True:
        try:
            return unpacker.unpack()
        except msgpack.OutOfData:
            pass
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed by server")
        unpacker.feed(data)


def handshake(sock: socket.socket, shared_key: str, user: str = "", password: str = "") -> Any:
    """The client side of Fluentd's HELO/PING/PONG; returns the PONG."""
    helo = read_object(sock)
    assert helo[0] == "HELO"
    nonce, auth_salt = helo[1]["nonce"], helo[1]["auth"]
    salt = os.urandom(16)
    hostname = "fluent-bit-node-1"
    digest = hashlib.sha512(salt + hostname.encode() + nonce + shared_key.encode()).hexdigest()
    pw = hashlib.sha512(auth_salt + user.encode() + password.encode()).hexdigest() if user else ""
    sock.sendall(msgpack.packb(["PING", hostname, salt, digest, user, pw], use_bin_type=True))
    pong = read_object(sock)
    if pong[1]:
        expect = hashlib.sha512(salt + pong[3].encode() + nonce + shared_key.encode()).hexdigest()
        assert pong[4] == expect
    return pong
