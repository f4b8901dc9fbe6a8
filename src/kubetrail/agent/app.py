"""The agent process: wires discovery, tailing, journald, metadata and shipping on one event loop.

One loop, one thread: reading, cutting and compressing are each one C call per megabyte, so a single
core keeps up with well over a hundred MB/s and the process stays small. The loop reads while there is
data and the in-flight budget allows, otherwise sleeps until inotify, an acknowledgement or the poll
timer wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

from kubetrail.agent.checkpoints import CheckpointStore
from kubetrail.agent.config import AgentConfig
from kubetrail.agent.discovery import Discovery
from kubetrail.agent.harvester import Harvester
from kubetrail.agent.metrics import Metrics, serve_http
from kubetrail.agent.tailer import FileTail, Pending
from kubetrail.chunk import Chunk, Origin

__all__ = ["Agent", "run_agent"]

log = logging.getLogger("kubetrail.agent")


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        from kubetrail.agent.kube import KubeMetadata
        from kubetrail.agent.shipper import Shipper

        self.cfg = cfg
        self.metrics = Metrics()
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        self.store = CheckpointStore(Path(cfg.data_dir) / "checkpoints.db")
        self.wake = asyncio.Event()
        self.shipper = Shipper(cfg, self.metrics, self._on_ack)
        self.kube = KubeMetadata(cfg, self.metrics)
        self.harvester = Harvester(
            cfg,
            self.store,
            self.shipper.add,
            self.metrics,
            metadata=self.kube.lookup,
            metadata_version=lambda: self.kube.version,
            budget_open=self.shipper.budget_open,
            hold=self.kube.hold,
        )
        sources = {
            "container": cfg.sources.container_globs,
            "audit": cfg.sources.audit_globs,
            "file": cfg.sources.file_globs,
            # `journalctl -o json` exports: tailed like any file, parsed by the server's journald parser
            "journald": cfg.sources.journal_export_globs,
        }
        self.discovery = Discovery({k: v for k, v in sources.items() if v})
        self.journald = None
        if cfg.sources.journald.enabled:
            from kubetrail.agent.journald import JournaldSource

            self.journald = JournaldSource(cfg, self.store, self.metrics, self.shipper.add)
        self.stopping = asyncio.Event()
        self._last_warn_risk = 0.0
        self.started = time.monotonic()

    def _on_ack(self, tail: FileTail) -> None:
        if tail.closed:
            self.harvester.note_closed(tail)
        self.wake.set()

    def healthy(self) -> tuple[bool, str]:
        stalled = time.monotonic() - self.metrics.heartbeat
        if stalled > 30:
            return False, f"main loop stalled for {stalled:.0f}s"
        if self.store.last_error:
            return True, f"degraded: checkpoint writes failing: {self.store.last_error}"
        if self.shipper.unreachable_since is not None:
            down = time.monotonic() - self.shipper.unreachable_since
            return True, f"server unreachable for {down:.0f}s (reading paused, files are the buffer)"
        return True, "ok"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        server = None
        if self.cfg.metrics_listen:
            host, _, port = self.cfg.metrics_listen.rpartition(":")
            try:
                server = await serve_http(host or "0.0.0.0", int(port), self.metrics, self.healthy)
            except OSError as exc:
                log.error("cannot listen for metrics on %s: %s", self.cfg.metrics_listen, exc)
        fd = self.discovery.fileno()
        if fd is not None:
            loop.add_reader(fd, self._on_inotify)
        background = [loop.create_task(self.kube.run())]
        if self.journald is not None:
            background.append(loop.create_task(self.journald.run()))
        log.info(
            "agent started",
            extra={
                "node": self.cfg.node_name,
                "server": self.cfg.server.url,
                "first_start": self.harvester.first_start,
            },
        )
        try:
            await self._main_loop()
        finally:
            await self._shutdown(background, server, fd)

    def _on_inotify(self) -> None:
        self.discovery.on_events()
        self.wake.set()

    async def _main_loop(self) -> None:
        cfg = self.cfg
        last_rescan = last_sync = last_save = last_stats = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            self.metrics.heartbeat = now
            if self.discovery.structure_changed or now - last_rescan >= cfg.rescan_interval_secs:
                self.harvester.sync(self.discovery.scan())
                last_rescan = last_sync = now
            read = self.harvester.poll()
            if self.journald is not None:
                read += self.journald.poll(self.shipper.budget_open())
            self._ship_summaries()
            if self.shipper.budget_open():
                self.shipper.flush_due()
            else:
                self.shipper.flush()  # reading is paused on the budget: a partial batch must not wait
            if now - last_save >= cfg.checkpoint_interval_secs:
                self.harvester.save_checkpoints()
                if self.journald is not None:
                    self.journald.save()
                self.kube.expire()
                last_save = now
            if now - last_stats >= 5:
                self._stats()
                last_stats = now
            if read:
                await asyncio.sleep(0)  # let acknowledgements and the network run
                continue
            if now - last_sync >= cfg.poll_interval_secs:
                self.harvester.sync(self.harvester.paths, rescan=False)  # files without a first line yet
                last_sync = now
            self.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=cfg.poll_interval_secs)

    def _ship_summaries(self, force: bool = False) -> None:
        for summary in self.harvester.ratelimit.due_summaries(force):
            line = summary.to_line(self.cfg.node_name)
            origin = Origin(
                node=self.cfg.node_name,
                source="file",
                path=summary.path,
                format="json",
                metadata=summary.metadata,
                receiver="agent-ratelimit",
                batch_id=f"{summary.container_key}:{summary.first:.6f}",
            )
            self.shipper.add(Chunk(origin, line), Pending(0, 0), None)

    def _stats(self) -> None:
        self.metrics.set_lag(self.harvester.lag())
        risk = self.harvester.bytes_at_risk()
        self.metrics.bytes_at_risk.set(risk)
        unreachable = self.shipper.unreachable_since is not None
        if risk and unreachable and time.monotonic() - self._last_warn_risk > 30:
            self._last_warn_risk = time.monotonic()
            log.warning(
                "server unreachable: %d unshipped bytes are in rotated files and may be rotated away",
                risk,
                extra={"bytes_at_risk": risk},
            )

    async def _shutdown(
        self, background: list[asyncio.Task[None]], server: asyncio.Server | None, fd: int | None
    ) -> None:
        log.info("agent stopping: draining in-flight batches")
        self._ship_summaries(force=True)
        await self.shipper.drain(timeout=self.cfg.shutdown_timeout_secs)
        self.harvester.save_checkpoints(force=True)
        if self.journald is not None:
            self.journald.save()
            self.journald.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
        if server is not None:
            server.close()
        await self.shipper.close()
        self.harvester.close()
        self.discovery.close()
        self.store.close()


def run_agent(cfg: AgentConfig) -> None:
    """Run until SIGTERM/SIGINT (uvloop when available)."""

    async def main() -> None:
        await Agent(cfg).run()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
