"""Shared plumbing of the HTTP receivers: a uvicorn listener, bounded body reads, error responses.

Status codes are the protocol: 400 malformed (``KT-PROTO``), 401/403 auth, 413 too large (declared
``Content-Length`` or decompressed, ``KT-LIMIT``), 429 queue full or rate-limited and 503 WAL
unavailable or shutting down — both with ``Retry-After`` (``KT-BUSY``/``KT-STORE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetrail.components import Receiver
from kubetrail.errors import Backpressure, KubetrailError, LimitExceeded, ProtocolError, StorageError
from kubetrail.receivers._context import ListenerConfig, ReceiverContext, Unauthorized
from kubetrail.server.settings import LimitsConfig, TLSConfig

__all__ = [
    "HttpReceiver",
    "SlowClient",
    "bearer_token",
    "decompress_body",
    "error_response",
    "read_body",
    "serve_http",
]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the kubetrail server owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class HttpListener:
    """One uvicorn server on a socket we bound ourselves (so port 0 works and is known at once)."""

    def __init__(self, app: Any, host: str, port: int, tls: TLSConfig | None, limits: LimitsConfig) -> None:
        self.sock = _bind(host, port)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        kwargs: dict[str, Any] = {}
        if tls is not None:
            import ssl

            kwargs.update(ssl_certfile=str(tls.cert_file), ssl_keyfile=str(tls.key_file))
            if tls.ca_file is not None:
                kwargs["ssl_ca_certs"] = str(tls.ca_file)
            kwargs["ssl_cert_reqs"] = {
                "none": ssl.CERT_NONE,
                "optional": ssl.CERT_OPTIONAL,
                "required": ssl.CERT_REQUIRED,
            }[tls.client_auth]
        config = uvicorn.Config(
            app,
            loop="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # rate limits key on the peer address: never trust X-Forwarded-For
            server_header=False,
            timeout_keep_alive=int(min(limits.idle_timeout_secs, 75)),
            timeout_graceful_shutdown=30,
            h11_max_incomplete_event_size=64 * 1024,
            **kwargs,
        )
        self.server = _Server(config)

    async def serve(self) -> None:
        await self.server._serve(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True


async def serve_http(listener: HttpListener, started: asyncio.Event) -> None:
    task = asyncio.ensure_future(listener.serve())
    while not listener.server.started and not task.done():
        await asyncio.sleep(0.01)
    started.set()
    await task


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() in ("bearer", "apikey") and token.strip():
        return token.strip()
    return None


class SlowClient(ProtocolError):
    """The body did not arrive within ``read_timeout_secs`` (408)."""


async def read_body(request: Request, max_bytes: int, timeout_secs: float = 30.0) -> bytes:
    """The body, refusing (413) a declared or actual size above ``max_bytes`` without buffering it,
    and (408) a client that does not finish sending it within ``timeout_secs``."""
    try:
        async with asyncio.timeout(timeout_secs):
            return await _read_body(request, max_bytes)
    except ClientDisconnect:
        raise ProtocolError("client disconnected before sending the whole body") from None
    except TimeoutError:
        raise SlowClient("request body not received in time", read_timeout_secs=timeout_secs) from None


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProtocolError("bad Content-Length", value=declared[:32])
        if int(declared) > max_bytes:
            raise LimitExceeded("request body too large", declared=int(declared), max_body_bytes=max_bytes)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > max_bytes:
            raise LimitExceeded("request body too large", max_body_bytes=max_bytes)
        parts.append(part)
    return b"".join(parts)


def decompress_body(body: bytes, encoding: str | None, limits: LimitsConfig) -> bytes:
    """Undo ``Content-Encoding`` (gzip, zstd, lz4, identity) within ``max_decompressed_bytes``."""
    from kubetrail.receivers.agent_protocol import decompress
    from kubetrail.receivers.fluent_forward import gunzip_members

    encoding = (encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return gunzip_members(body, limits.max_decompressed_bytes)
    return decompress(body, encoding, limits.max_decompressed_bytes)


def error_response(exc: BaseException, retry_after_secs: float = 1.0) -> Response:
    """Map an error onto the status code and ``{"error": {"code", "message"}}`` body."""
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        status, code = exc.status, "KT-AUTH"
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="kubetrail"'
    elif isinstance(exc, LimitExceeded):
        status, code = 413, exc.code
    elif isinstance(exc, SlowClient):
        status, code = 408, exc.code
    elif isinstance(exc, ProtocolError):
        status, code = 400, exc.code
    elif isinstance(exc, Backpressure):
        status, code = 429, exc.code
        if "shutting down" in str(exc):
            status = 503
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_secs)))
    elif isinstance(exc, StorageError):
        status, code = 503, exc.code
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_secs)))
    elif isinstance(exc, KubetrailError):
        status, code = 500, exc.code
    else:
        status, code = 500, "KT-ERROR"
        log.exception("receiver error", exc_info=exc)
    return JSONResponse({"error": {"code": code, "message": str(exc)}}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]
C = TypeVar("C", bound=ListenerConfig)


class HttpReceiver(Receiver[C]):
    """Base of HTTP receivers: subclasses list their routes; ``run`` serves until ``stop``."""

    role: ClassVar[str] = "agent"

    def __init__(self, config: C, name: str = "") -> None:
        super().__init__(config, name)
        self.ctx: ReceiverContext | None = None
        self.listener: HttpListener | None = None
        self.started = asyncio.Event()

    def routes(self) -> list[Route]:
        raise NotImplementedError  # abstract

    @property
    def limits(self) -> LimitsConfig:
        assert self.ctx is not None
        return self.config.limits or self.ctx.limits

    @property
    def address(self) -> tuple[str, int]:
        if self.listener is None:
            raise RuntimeError(f"receiver {self.name} is not listening")
        return self.listener.address

    def guarded(self, handler: Handler) -> Handler:
        """Wrap a handler: count outcomes, translate every error into its status code."""

        async def endpoint(request: Request) -> Response:
            assert self.ctx is not None
            try:
                response = await handler(request)
            except Exception as exc:
                response = error_response(exc, self.ctx.retry_after_secs)
                code = "KT-AUTH" if isinstance(exc, Unauthorized) else getattr(exc, "code", "KT-ERROR")
                self.ctx.metrics.rejected.labels(self.name, code).inc()
            self.ctx.metrics.requests.labels(self.name, str(response.status_code)).inc()
            return response

        return endpoint

    def client_key(self, request: Request, identity: Any) -> str:
        if identity is not None:
            return str(identity.name)
        return request.client.host if request.client else "unknown"

    async def run(self, sink: Any) -> None:
        self.ctx = sink
        host, port = self.config.address()
        app = Starlette(routes=self.routes())
        self.listener = HttpListener(app, host, port, self.config.tls, self.limits)
        await serve_http(self.listener, self.started)

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
