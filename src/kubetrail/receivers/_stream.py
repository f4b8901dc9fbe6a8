"""Shared plumbing of the TCP (and TLS) stream receivers: forward and syslog.

``StreamReceiver`` runs an asyncio server, tracks its connections, applies the idle timeout (no
byte for ``idle_timeout_secs``) and the slow-client timeout (a frame started but not finished within
``read_timeout_secs``), and on ``stop`` closes the listener and lets open connections finish the
frame in hand. Subclasses implement ``handle(reader, writer)`` using ``read_some``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, TypeVar

from kubetrail.components import Receiver
from kubetrail.receivers._context import ListenerConfig, ReceiverContext
from kubetrail.server.settings import LimitsConfig
from kubetrail.server.tls import server_context

__all__ = ["ClientGone", "StreamReceiver"]

log = logging.getLogger(__name__)
C = TypeVar("C", bound=ListenerConfig)


class ClientGone(Exception):
    """The peer closed, timed out or broke the protocol; the connection is closed."""


class StreamReceiver(Receiver[C]):
    read_size = 256 * 1024

    def __init__(self, config: C, name: str = "") -> None:
        super().__init__(config, name)
        self.ctx: ReceiverContext | None = None
        self.started = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._idle: set[asyncio.Task[Any]] = set()  # waiting for a new frame: safe to cancel on stop
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def limits(self) -> LimitsConfig:
        assert self.ctx is not None
        return self.config.limits or self.ctx.limits

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"receiver {self.name} is not listening")
        return self._server.sockets[0].getsockname()[:2]  # type: ignore[no-any-return]

    async def run(self, sink: Any) -> None:
        self.ctx = sink
        host, port = self.config.address()
        ssl_ctx = server_context(self.config.tls, f"receivers.{self.name}.tls") if self.config.tls else None
        self._server = await asyncio.start_server(
            self._on_connect, host, port, ssl=ssl_ctx, limit=self.read_size, backlog=1024
        )
        await self.start_extra(host, port)
        self.started.set()
        # start_server already serves; wait for stop() (uvloop's serve_forever ignores close())
        await self._stopped.wait()

    async def start_extra(self, host: str, port: int) -> None:
        """Hook for listeners beside the TCP one (UDP heartbeats, syslog over UDP)."""

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self.ctx is not None
        self._connections.add(task)
        gauge = self.ctx.metrics.connections.labels(self.name)
        gauge.inc()
        try:
            await self.handle(reader, writer)
        except (ClientGone, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("%s: connection handler failed", self.name)
        finally:
            gauge.dec()
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError  # abstract

    async def read_some(self, reader: asyncio.StreamReader, mid_frame: bool) -> bytes:
        """Next bytes from the peer; ClientGone on EOF, idle or slow-client timeout, or shutdown."""
        if self._stopping and not mid_frame:
            raise ClientGone("server stopping")
        limits = self.limits
        timeout = limits.read_timeout_secs if mid_frame else limits.idle_timeout_secs
        task = asyncio.current_task()
        if not mid_frame and task is not None:
            self._idle.add(task)
        try:
            data = await asyncio.wait_for(reader.read(self.read_size), timeout=timeout)
        except asyncio.CancelledError:
            raise ClientGone("server stopping") from None
        except TimeoutError:
            assert self.ctx is not None
            self.ctx.metrics.rejected.labels(self.name, "KT-TIMEOUT").inc()
            raise ClientGone("timeout") from None
        finally:
            if task is not None:
                self._idle.discard(task)
        if not data:
            raise ClientGone("eof")
        return data

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._idle):
            task.cancel()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=5)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
        self._stopped.set()
