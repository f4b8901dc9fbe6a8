"""What the server hands every receiver: the pipeline to submit to, auth, limits, rate limits, metrics.

A receiver's ``run(sink)`` gets a ``ReceiverContext`` as its sink. Receivers only ever call
``submit`` (durable once it returns), ``authenticate`` and ``check_rate``; everything else is shared
configuration.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kubetrail.components import ComponentConfig
from kubetrail.errors import Backpressure
from kubetrail.server.auth import Identity, TokenStore
from kubetrail.server.backpressure import RateLimiter
from kubetrail.server.metrics import ServerMetrics
from kubetrail.server.pipeline import Pipeline
from kubetrail.server.settings import LimitsConfig, TLSConfig, parse_listen

__all__ = ["ListenerConfig", "ReceiverContext", "Unauthorized"]


class ListenerConfig(ComponentConfig):
    """Options every network receiver has."""

    listen: str
    tls: TLSConfig | None = None
    limits: LimitsConfig | None = None  # overrides server.limits for this receiver

    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class Unauthorized(Exception):
    """No valid credentials (401) or not allowed (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ReceiverContext:
    pipeline: Pipeline
    metrics: ServerMetrics
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    tokens: TokenStore | None = None
    rate_limiter: RateLimiter | None = None
    retry_after_secs: float = 1.0
    accepting: bool = True

    async def __call__(self, item: Any) -> None:
        """BatchSink form: ``(source, codec, data)``."""
        source, codec, data = item
        await self.submit(source, codec, data)

    async def submit(
        self, source: str, codec: str, data: bytes, hint: Any = None, *, wait: bool = False, cost: int = 0
    ) -> int:
        if not self.accepting:
            raise Backpressure("server is shutting down", self.retry_after_secs)
        return await self.pipeline.submit(source, codec, data, hint, wait=wait, cost=cost)

    async def enqueue(
        self, source: str, codec: str, data: bytes, hint: Any = None, *, wait: bool = True
    ) -> asyncio.Future[int]:
        if not self.accepting:
            raise Backpressure("server is shutting down", self.retry_after_secs)
        return await self.pipeline.enqueue(source, codec, data, hint, wait=wait)

    def authenticate(self, token: str | None, role: str) -> Identity | None:
        """None when auth is off (no tokens file); raises Unauthorized for a missing/bad/weak token."""
        if self.tokens is None:
            return None
        if not token:
            raise Unauthorized(401, "missing bearer token")
        identity = self.tokens.authenticate(token)
        if identity is None:
            raise Unauthorized(401, "unknown token")
        if not identity.has(role):
            raise Unauthorized(403, f"token {identity.name!r} lacks role {role!r}")
        return identity

    def check_rate(self, client: str, cost: float = 1.0) -> None:
        if self.rate_limiter is not None:
            self.rate_limiter.check(client, cost)

    async def wait_rate(self, receiver: str, client: str, cost: float = 1.0) -> None:
        """Streams cannot answer 429: a client over its rate is slowed down (reading pauses)."""
        while self.rate_limiter is not None:
            try:
                self.rate_limiter.check(client, cost)
                return
            except Backpressure as exc:
                self.metrics.backpressure.labels(receiver, "rate_limited").inc()
                await asyncio.sleep(exc.retry_after_secs)
