"""The server process: receivers, WAL, pipeline, store and the API listener on one asyncio loop.

Start order: open the WAL (cutting a torn tail), open the store, replay the WAL into the pipeline,
start the pipeline, start every receiver, start the API listener (``/healthz``, ``/readyz``,
``/metrics``, the store's ``/api/v1/search``), then report ready. Shutdown (SIGTERM/SIGINT): not
ready, refuse new data (503), stop the listeners (in-flight requests finish), drain the pipeline,
flush the store, checkpoint and fsync the WAL, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kubetrail.components import Output, Receiver, Transform
from kubetrail.config import KubetrailConfig, Topology
from kubetrail.errors import ConfigError
from kubetrail.receivers._context import ReceiverContext, Unauthorized
from kubetrail.receivers._http import HttpListener, bearer_token, serve_http
from kubetrail.server.auth import Identity, TokenStore
from kubetrail.server.backpressure import ByteBudget, RateLimiter
from kubetrail.server.metrics import ServerMetrics
from kubetrail.server.pipeline import ChunkParser, Pipeline, StoreLike
from kubetrail.server.settings import ServerConfig, parse_listen
from kubetrail.server.wal import WriteAheadLog

__all__ = ["KubetrailServer", "ServerThread", "default_parser", "default_store", "run_server"]

log = logging.getLogger(__name__)


def default_parser(cfg: KubetrailConfig) -> ChunkParser:
    """The formats' dispatching parser (picks CRI, docker, klog, audit, ... per chunk origin)."""
    try:
        parsing_cls = importlib.import_module("kubetrail.formats.dispatch").Parsing
    except (ImportError, AttributeError) as exc:
        raise ConfigError([("formats", f"kubetrail.formats.dispatch is not available: {exc}")]) from None
    parser: ChunkParser = parsing_cls(cfg.section("formats"))
    return parser


def default_store(cfg: KubetrailConfig) -> StoreLike:
    """The embedded store under ``<data_dir>/store`` configured by the ``store`` section.

    Opened through ``open_shared`` so a ``store`` output naming the same directory shares the handle.
    """
    try:
        open_shared = importlib.import_module("kubetrail.store.core").open_shared
    except (ImportError, AttributeError) as exc:
        raise ConfigError([("store", f"kubetrail.store is not available: {exc}")]) from None
    section = cfg.section("store")
    path = getattr(section, "path", None) or Path(cfg.data_dir) / "store"
    store: StoreLike = open_shared(path, section)
    return store


class KubetrailServer:
    def __init__(
        self,
        cfg: KubetrailConfig,
        topology: Topology,
        *,
        store: StoreLike | None = None,
        parser: ChunkParser | None = None,
    ) -> None:
        self.cfg = cfg
        self.topology = topology
        self.settings: ServerConfig = cfg.section("server")
        self.metrics = ServerMetrics()
        self._store = store
        self._parser = parser
        self.ready = False
        self.store: StoreLike | None = None
        self.pipeline: Pipeline | None = None
        self.wal: WriteAheadLog | None = None
        self.ctx: ReceiverContext | None = None
        self.api: HttpListener | None = None
        self.replayed = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_event = asyncio.Event()

    @property
    def receivers(self) -> dict[str, Receiver[Any]]:
        return {name: r for name, r in self.topology.receivers.items() if isinstance(r, Receiver)}

    async def start(self) -> None:
        s = self.settings
        tokens = TokenStore.load(s.tokens_file) if s.tokens_file else None
        wal_dir = s.wal.dir or Path(self.cfg.data_dir) / "wal"
        self.wal = WriteAheadLog(wal_dir, s.wal.segment_bytes, fsync=s.wal.fsync)
        await asyncio.to_thread(self.wal.open)
        self.store = self._store if self._store is not None else default_store(self.cfg)
        parser = self._parser if self._parser is not None else default_parser(self.cfg)
        budget = ByteBudget(s.queue_max_bytes, s.retry_after_secs)
        self.metrics.queue_capacity.set(s.queue_max_bytes)
        self.pipeline = Pipeline(
            self.wal,
            parser,
            self.store,
            transforms=[t for t in self.topology.transforms.values() if isinstance(t, Transform)],
            outputs=[o for o in self.topology.outputs.values() if isinstance(o, Output)],
            budget=budget,
            metrics=self.metrics,
            cluster_name=self.cfg.cluster.name,
            flush_interval_secs=s.store_flush_interval_secs,
            state_hold_secs=self._state_hold_secs(),
            max_batch_bytes=s.max_batch_bytes,
            data_dir=Path(self.cfg.data_dir),
        )
        self.replayed = await self.pipeline.replay()
        if self.replayed:
            log.info("replayed %d WAL records", self.replayed)
        self.pipeline.start()
        rate = RateLimiter(s.rate_limit.requests_per_sec, s.rate_limit.burst) if s.rate_limit else None
        self.ctx = ReceiverContext(self.pipeline, self.metrics, s.limits, tokens, rate, s.retry_after_secs)
        for name, receiver in self.receivers.items():
            task = asyncio.get_running_loop().create_task(receiver.run(self.ctx), name=f"receiver-{name}")
            self._tasks.append(task)
            started = getattr(receiver, "started", None)
            if isinstance(started, asyncio.Event):
                waiter = asyncio.ensure_future(started.wait())
                await asyncio.wait({waiter, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if task.done():
                    task.result()  # a bind error surfaces here, with the receiver's name in the task
        host, port = parse_listen(s.listen)
        self.api = HttpListener(self._api_app(), host, port, s.tls, s.limits)
        api_started = asyncio.Event()
        self._tasks.append(asyncio.get_running_loop().create_task(serve_http(self.api, api_started)))
        await api_started.wait()
        self.ready = True

    def _state_hold_secs(self) -> float:
        """How long parser state may hold bytes back: the formats' partial timeout plus margin."""
        try:
            timeout = float(self.cfg.section("formats").partial_timeout_secs)
        except (KeyError, AttributeError):
            timeout = 5.0
        return timeout + 2 * self.settings.store_flush_interval_secs

    def _api_app(self) -> Starlette:
        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def readyz(request: Request) -> Response:
            if not self.ready:
                return JSONResponse({"status": "not ready"}, status_code=503)
            return JSONResponse({"status": "ready", "replayed_wal_records": self.replayed})

        async def metrics(request: Request) -> Response:
            if self.wal is not None:
                self.metrics.wal_fsyncs.set(self.wal.fsyncs)
                self.metrics.wal_segments.set(self.wal.segment_count)
            return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

        app = Starlette(
            routes=[
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                Route("/metrics", metrics),
            ]
        )
        try:
            from fastapi import FastAPI

            router = importlib.import_module("kubetrail.store.api").router
            api = FastAPI(title="kubetrail")
            api.state.kubetrail_store = self.store
            api.include_router(router)
            api.middleware("http")(self._require_reader)
            app.mount("/api", api)
        except (ImportError, AttributeError):
            log.info("kubetrail.store.api not available: the query API is not served")
        app.state.kubetrail_store = self.store
        return app

    def _authenticate_reader(self, token: str | None) -> Identity | None:
        """A hunter token (reads every namespace) or a viewer token (reads its token's namespaces);
        admin passes as both. None when tokens are not configured (everything is readable)."""
        assert self.ctx is not None
        try:
            return self.ctx.authenticate(token, "hunter")
        except Unauthorized as exc:
            if exc.status != 403:
                raise
            try:
                return self.ctx.authenticate(token, "viewer")
            except Unauthorized:
                raise Unauthorized(403, f"{exc} or 'viewer'") from None

    async def _require_reader(self, request: Request, call_next: Any) -> Response:
        """Every read path needs a hunter or viewer token (admin passes) when tokens are configured.

        The caller's ``Identity`` goes on ``request.state.kubetrail_identity``: the search router
        scopes a viewer to its namespaces. The token name is logged with the query (who searched what).
        """
        try:
            identity = self._authenticate_reader(bearer_token(request))
        except Unauthorized as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="kubetrail"'} if exc.status == 401 else {}
            body = {"error": {"code": "KT-AUTH", "message": str(exc)}}
            return JSONResponse(body, status_code=exc.status, headers=headers)
        request.state.kubetrail_identity = identity
        scope = identity.read_scope() if identity else None
        log.info(
            "api %s %s by %s%s: %s",
            request.method,
            request.url.path,
            identity.name if identity else "anonymous",
            "" if scope is None else f" (namespaces {', '.join(scope) or 'none'})",
            request.url.query[:500],
        )
        response: Response = await call_next(request)
        return response

    def request_stop(self) -> None:
        self._stop_event.set()

    async def wait_stopped(self) -> None:
        await self._stop_event.wait()

    async def stop(self) -> None:
        """Graceful: stop accepting, let in-flight requests finish, drain, flush, fsync."""
        self.ready = False
        timeout = self.settings.shutdown_timeout_secs
        for receiver in self.receivers.values():
            await receiver.stop()
        # the receivers drain; the API task (the last one) runs until ``self.api.stop()`` below
        receiver_tasks = self._tasks[: len(self.receivers)]
        if receiver_tasks:
            _, pending = await asyncio.wait(receiver_tasks, timeout=timeout)
            for task in pending:
                task.cancel()
        if self.ctx is not None:
            self.ctx.accepting = False
        if self.pipeline is not None:
            await self.pipeline.stop()
        if self.wal is not None:
            await self.wal.close()
        if self.api is not None:
            self.api.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)


async def run_server(cfg: KubetrailConfig, topology: Topology) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    server = KubetrailServer(cfg, topology)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.start()
    log.info("kubetrail server ready (api %s)", server.api.address if server.api else "-")
    await server.wait_stopped()
    log.info("shutting down")
    await server.stop()


class ServerThread:
    """Run a ``KubetrailServer`` on its own event loop in a background thread (demo, end-to-end tests).

    with ServerThread(cfg, topology) as server:
        url = server.address("agent")     # ("127.0.0.1", port) of a receiver
        ...
    # leaving the block stops it gracefully (drain, store flush, WAL checkpoint)
    """

    def __init__(self, cfg: KubetrailConfig, topology: Topology, **kwargs: Any) -> None:
        import threading

        self.server = KubetrailServer(cfg, topology, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kubetrail-server", daemon=True)

    def _main(self) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency
            loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self.server.wait_stopped()
        await self.server.stop()

    def start(self, timeout: float = 60.0) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the kubetrail server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def address(self, receiver: str) -> tuple[str, int]:
        """Bound (host, port) of a receiver, or of the API listener for ``"api"``."""
        if receiver == "api":
            assert self.server.api is not None
            return self.server.api.address
        return self.server.receivers[receiver].address  # type: ignore[attr-defined,no-any-return]

    def stop(self, timeout: float = 60.0) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.server.request_stop)
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
