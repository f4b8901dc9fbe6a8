"""A small HTTP/1.1 client for the one request the agent makes (POST a body, read a short JSON answer).

Why not httpx: on every node the agent's memory and CPU per request matter more than features. httpx
costs ~10 MB of imports and keeps request bodies alive in reference cycles until the garbage collector
runs, which pushed the agent's peak RSS far over budget. This client keeps ``max_connections``
keep-alive connections, sends ``Content-Length`` bodies, reads ``Content-Length`` / chunked / close-
delimited responses, verifies TLS with the given context, and frees the body as soon as it is written.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["HttpClient", "HttpError", "HttpResponse"]

_MAX_RESPONSE_BYTES = 1024 * 1024


class HttpError(Exception):
    """Connection, TLS, timeout or protocol failure (the request may or may not have arrived)."""


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class HttpClient:
    def __init__(
        self, url: str, ssl_context: ssl.SSLContext | None, timeout_secs: float, max_connections: int
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {url!r}")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path or "/"
        self.ssl = ssl_context if parts.scheme == "https" else None
        self.timeout = timeout_secs
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        authority = self.host if parts.port is None else f"{self.host}:{self.port}"
        self._host_header = authority

    async def post(self, body: list[bytes], headers: dict[str, str]) -> HttpResponse:
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            fresh = conn is None
            try:
                if conn is None:
                    conn = await self._connect()
                response, keep = await asyncio.wait_for(self._exchange(conn, body, headers), self.timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as exc:
                if conn is not None:
                    conn.writer.close()
                if not fresh and isinstance(exc, (asyncio.IncompleteReadError, ConnectionError)):
                    # A kept-alive connection the server had closed: retry once on a new one.
                    return await self._once_fresh(body, headers)
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            if keep:
                self._idle.append(conn)
            else:
                conn.writer.close()
            return response

    async def _once_fresh(self, body: list[bytes], headers: dict[str, str]) -> HttpResponse:
        conn = None
        try:
            conn = await self._connect()
            response, keep = await asyncio.wait_for(self._exchange(conn, body, headers), self.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as exc:
            if conn is not None:
                conn.writer.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        if keep:
            self._idle.append(conn)
        else:
            conn.writer.close()
        return response

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.ssl, limit=_MAX_RESPONSE_BYTES),
            self.timeout,
        )
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, body: list[bytes], headers: dict[str, str]
    ) -> tuple[HttpResponse, bool]:
        length = sum(len(p) for p in body)
        head = [f"POST {self.path} HTTP/1.1", f"Host: {self._host_header}", f"Content-Length: {length}"]
        head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        conn.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        conn.writer.writelines(body)
        await conn.writer.drain()
        status_line = await conn.reader.readuntil(b"\r\n")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        response_headers: dict[str, str] = {}
        while True:
            line = await conn.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        keep = response_headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
        if "content-length" in response_headers:
            length = int(response_headers["content-length"])
            if length > _MAX_RESPONSE_BYTES:
                raise ValueError("response too large")
            data = await conn.reader.readexactly(length)
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            pieces = []
            total = 0
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await conn.reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    break
                total += size
                if total > _MAX_RESPONSE_BYTES:
                    raise ValueError("response too large")
                pieces.append(await conn.reader.readexactly(size))
                await conn.reader.readexactly(2)
            data = b"".join(pieces)
        else:
            data = await conn.reader.read(_MAX_RESPONSE_BYTES)
            keep = False
        return HttpResponse(status, response_headers, data), keep

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.writer.close()
        self._idle.clear()
