"""Bounded memory, measured in bytes, and per-client rate limits.

Every accepted byte holds a reservation in one ``ByteBudget`` from the moment a receiver reads it
until the pipeline has stored it. HTTP receivers *try* to reserve and answer 429 with Retry-After
when the budget is spent; stream receivers (forward, syslog) *wait* for room, which stops them
reading the socket — TCP flow control then slows the sender — and delays forward acks.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from kubetrail.errors import Backpressure

__all__ = ["ByteBudget", "RateLimiter"]


class ByteBudget:
    """A counting semaphore over bytes. One reservation larger than the whole budget is allowed
    when nothing else is held, so a single maximal body is never refused forever."""

    def __init__(self, capacity_bytes: int, retry_after_secs: float = 1.0) -> None:
        self.capacity = capacity_bytes
        self.retry_after_secs = retry_after_secs
        self.used = 0
        self.rejections = 0
        self._waiters: list[asyncio.Future[None]] = []

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.capacity

    def try_reserve(self, n: int) -> None:
        """Reserve ``n`` bytes now or raise Backpressure (for HTTP: 429 + Retry-After)."""
        if not self._fits(n):
            self.rejections += 1
            raise Backpressure(
                "ingest queue is full", self.retry_after_secs, queued_bytes=self.used, capacity=self.capacity
            )
        self.used += n

    async def reserve(self, n: int) -> None:
        """Wait until ``n`` bytes fit (for stream receivers: reading pauses meanwhile)."""
        while not self._fits(n):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self.used += n

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)


class RateLimiter:
    """Token buckets keyed by client; the least recently seen clients are forgotten beyond
    ``max_clients`` so an address scan cannot grow memory."""

    def __init__(self, rate_per_sec: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = rate_per_sec
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, client: str, cost: float = 1.0, now: float | None = None) -> None:
        """Take ``cost`` tokens from ``client``'s bucket or raise Backpressure with the wait time."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[client] = (tokens, now)
            wait = (cost - tokens) / self.rate
            raise Backpressure("rate limit exceeded", max(wait, 0.001), client=client)
        self._buckets[client] = (tokens - cost, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
