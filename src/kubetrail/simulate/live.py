"""Live mode: append to a simulated cluster's logs at a steady rate, rotating files as kubelet and
kube-apiserver do, until a duration passes or ``stop()`` is called.

Used for the agent's fault tests (rotation by rename and by copytruncate while tailing) and for
``kubetrail simulate --live``. Timestamps are the wall clock; content is seeded. ``manifest.json`` is
rewritten atomically every second and at the end with the line count of every stream, so a test can
check that every sequence id arrived exactly once.
"""

from __future__ import annotations

import gzip
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson
import pyarrow as pa

from kubetrail.simulate import arrowtext, system
from kubetrail.simulate.attacks import Injection, plan_attacks
from kubetrail.simulate.audit import AuditRecord, encode_bulk
from kubetrail.simulate.batch import container_log_paths, prepare_root, stream_rng
from kubetrail.simulate.cluster import Cluster, Container, build_cluster
from kubetrail.simulate.noise import background_events
from kubetrail.simulate.options import SimulationOptions
from kubetrail.simulate.report import MANIFEST, TRUTH, SimulationReport, StreamInfo
from kubetrail.simulate.rotation import GZIP_LEVEL, audit_rotated_name, kubelet_rotated_name
from kubetrail.simulate.timefmt import NS
from kubetrail.simulate.workloads import render
from kubetrail.simulate.writers import add_seq, encode_cri, encode_docker, encode_journal

__all__ = ["LiveOptions", "LiveSimulator"]


_ATTACK_TARGETS = (
    ("shop", "orders"),
    ("shop", "cart"),
    ("payments", "payments-api"),
    ("kube-system", "kube-apiserver"),
)


_FORMATS = {"kubelet": "cri", "docker": "docker", "audit": "audit", "plain": "klog", "journal": "journald"}


@dataclass
class LiveOptions:
    rate: float = 5000.0  # container lines per second, all containers together
    containers: int = 50
    audit_rate: float = 200.0  # audit events per second
    node_rate: float = 20.0  # kubelet lines per second per node
    tick_s: float = 0.1
    attack_window_s: float = 0.0  # > 0: play the scripted attacks over the first N seconds (truth.jsonl)


@dataclass
class _LiveFile:
    """An appended file with kubelet or lumberjack rotation."""

    path: Path
    stream: str
    layer: str
    node: str
    kind: str  # a key of _FORMATS: how the file is written and rotated
    handle: BinaryIO | None = None
    size: int = 0
    first_seq: int = 0  # seq id of the first line in the current file
    next_seq: int = 0
    rotated: list[tuple[Path, int, int]] = field(default_factory=list)  # (path, first, end) oldest first

    def open(self) -> BinaryIO:
        if self.handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open across ticks
            self.size = self.path.stat().st_size
        return self.handle

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class LiveSimulator:
    """Append lines at ``live.rate`` per second across ``live.containers`` containers, plus node and
    audit logs; rotate container logs at ``options.rotate_bytes`` (rename, or copy + truncate when
    ``options.copytruncate``) and the audit log at ``options.audit_rotate_bytes``."""

    def __init__(
        self, root: Path | str, options: SimulationOptions | None = None, live: LiveOptions | None = None
    ):
        self.root = Path(root)
        self.o = options or SimulationOptions()
        self.live = live or LiveOptions()
        self._stop = threading.Event()
        self.report = SimulationReport(self.root, self.o)
        self.cluster = self._cluster()
        self.rng = stream_rng(self.o.seed, "live")
        self.files: dict[str, _LiveFile] = {}
        self._deleted: dict[str, list[tuple[int, int]]] = {}
        self._boot_ns = time.time_ns() - 86400 * NS  # journald's monotonic clock starts at boot
        self._pending_audit: list[AuditRecord] = []
        self._pending_lines: dict[str, list[Injection]] = {}
        self._starts: dict[str, int] = {}  # stream -> wall ns it starts (attack pods start late)

    def _plan_attacks(self, wall: int) -> None:
        """Schedule the batch mode's attack scenarios over the first ``attack_window_s`` seconds."""
        if not (self.o.attacks and self.live.attack_window_s > 0):
            return
        window = int(self.live.attack_window_s * NS)
        plan = plan_attacks(self.cluster, wall, wall + window, stream_rng(self.o.seed, "attacks"))
        self.report.attacks = plan.attacks
        self._pending_audit = sorted(plan.audit, key=lambda r: r.ts_ns)
        self._pending_lines = {s: sorted(v, key=lambda i: i.ts_ns) for s, v in plan.container_lines.items()}
        self._starts = {
            c.stream: wall + int(c.start_at * window) for c in self.cluster.containers if c.start_at
        }

    def _evidence(self, tag: str, seq_id: str, audit_id: str = "") -> None:
        for a in self.report.attacks:
            if a.id == tag:
                a.seq_ids.append(seq_id)
                if audit_id and audit_id not in a.audit_ids:
                    a.audit_ids.append(audit_id)

    def _cluster(self) -> Cluster:
        nodes = self.o.nodes
        while True:
            cluster = build_cluster(
                self.o.model_copy(update={"nodes": nodes}),
                stream_rng(self.o.seed, "cluster"),
            )
            if len(cluster.containers) >= self.live.containers or nodes >= 100:
                break
            nodes += 1
        keep: list[Container] = []
        if self.o.attacks and self.live.attack_window_s > 0:  # the pods the scenarios act on come first
            for ns, prefix in _ATTACK_TARGETS:
                keep.append(
                    next(c for c in cluster.containers if c.namespace == ns and c.pod.startswith(prefix))
                )
        rest = [c for c in cluster.containers if c not in keep]
        chosen = keep + rest[: max(0, self.live.containers - len(keep))]
        cluster.containers = [c for c in cluster.containers if c in chosen]
        for c in cluster.containers:  # one instance each: restarts are a batch-mode feature
            c.restart_at = None
            c.ids = c.ids[:1]
        return cluster

    def stop(self) -> None:
        self._stop.set()

    # -- setup -------------------------------------------------------------------------------------
    def _setup(self) -> None:
        prepare_root(self.root)
        (self.root / MANIFEST).write_text("{}\n")  # marks the root as ours while running
        for c in self.cluster.containers:
            path, link = container_log_paths(self.root, c, 0)
            layer = "controlplane" if c.static else "container"
            if c.node.runtime == "docker":  # the pods path links to docker's own file
                real = (
                    self.root / c.node.name / "var/lib/docker/containers" / c.ids[0] / f"{c.ids[0]}-json.log"
                )
                self.files[c.stream] = _LiveFile(real, c.stream, layer, c.node.name, "docker")
                self.files[c.stream].open()
                path.parent.mkdir(parents=True, exist_ok=True)
                path.symlink_to(os.path.relpath(real, path.parent))
            else:
                self.files[c.stream] = _LiveFile(path, c.stream, layer, c.node.name, "kubelet")
                self.files[c.stream].open()
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(path, link.parent))
        for node in self.cluster.nodes:
            stream = f"n{node.index}.kubelet"
            self.files[stream] = _LiveFile(
                self.root / node.name / "var/log/kubelet.log", stream, "node", node.name, "plain"
            )
            stream = f"n{node.index}.journal.kubelet"
            self.files[stream] = _LiveFile(
                self.root / node.name / "journal/kubelet.json", stream, "node", node.name, "journal"
            )
        cp = self.cluster.control_plane
        self.files["audit"] = _LiveFile(
            self.root / cp.name / "var/log/kubernetes/audit/audit.log", "audit", "audit", cp.name, "audit"
        )

    # -- writing -----------------------------------------------------------------------------------
    def _append(self, f: _LiveFile, units: pa.Array, count: int, now_ns: int) -> None:
        data = arrowtext.slice_bytes(units, 0, count)
        if f.kind == "audit" and f.size and f.size + data.nbytes > self.o.audit_rotate_bytes:
            self._rotate_audit(f, now_ns)
        f.open().write(data)
        f.size += data.nbytes
        f.next_seq += count
        if f.kind == "kubelet" and f.size >= self.o.rotate_bytes:
            self._rotate_kubelet(f, now_ns)
        elif f.kind == "docker" and f.size >= self.o.rotate_bytes:
            self._rotate_docker(f)

    def _rotate_docker(self, f: _LiveFile) -> None:
        """docker json-file: ``<id>-json.log`` -> ``.1`` -> ``.2`` ...; ``rotate_keep`` files in all."""
        while f.rotated and len(f.rotated) >= self.o.rotate_keep - 1:
            old, a, b = f.rotated.pop(0)
            old.unlink()
            self._deleted.setdefault(f.stream, []).append((a, b))
        shifted = []
        for old, a, b in f.rotated:  # oldest (highest number) first, so no rename overwrites
            number = int(old.name.rsplit(".", 1)[1])
            new = old.with_name(f"{f.path.name}.{number + 1}")
            old.rename(new)
            shifted.append((new, a, b))
        f.close()
        first = f.path.with_name(f"{f.path.name}.1")
        f.path.rename(first)
        f.open()
        f.rotated = [*shifted, (first, f.first_seq, f.next_seq)]
        f.first_seq = f.next_seq
        f.size = 0

    def _rotate_kubelet(self, f: _LiveFile, now_ns: int) -> None:
        name = kubelet_rotated_name(f.path.name, now_ns)
        while (f.path.parent / name).exists() or (f.path.parent / f"{name}.gz").exists():
            now_ns += NS
            name = kubelet_rotated_name(f.path.name, now_ns)
        target = f.path.with_name(name)
        # kubelet first compresses the previous rotated file, then rotates the current one
        if f.rotated:
            prev, a, b = f.rotated[-1]
            gz = prev.with_name(prev.name + ".gz")
            tmp = gz.with_name(gz.name + ".tmp")
            tmp.write_bytes(gzip.compress(prev.read_bytes(), compresslevel=GZIP_LEVEL, mtime=0))
            tmp.rename(gz)
            prev.unlink()
            f.rotated[-1] = (gz, a, b)
        if self.o.copytruncate:
            shutil.copyfile(f.path, target)
            assert f.handle is not None
            f.handle.truncate(0)  # O_APPEND: the next write lands at the new end
        else:
            f.close()
            f.path.rename(target)
            f.open()  # the runtime reopens the log right away (kubelet's ReopenContainerLog)
        f.rotated.append((target, f.first_seq, f.next_seq))
        f.first_seq = f.next_seq
        f.size = 0
        while len(f.rotated) > self.o.rotate_keep - 1:
            old, a, b = f.rotated.pop(0)
            old.unlink()
            self._deleted.setdefault(f.stream, []).append((a, b))

    def _rotate_audit(self, f: _LiveFile, now_ns: int) -> None:
        f.close()
        target = f.path.with_name(audit_rotated_name(now_ns, f.path.stem, f.path.suffix))
        f.path.rename(target)
        f.open()
        if self.o.audit_compress:
            gz = target.with_name(target.name + ".gz")
            gz.write_bytes(gzip.compress(target.read_bytes(), compresslevel=GZIP_LEVEL, mtime=0))
            target.unlink()
            target = gz
        f.rotated.append((target, f.first_seq, f.next_seq))
        f.first_seq = f.next_seq
        f.size = 0
        while len(f.rotated) > self.o.audit_keep:
            old, a, b = f.rotated.pop(0)
            old.unlink()
            self._deleted.setdefault(f.stream, []).append((a, b))

    def _tick_containers(self, lines: int, t_from: int, t_to: int) -> None:
        containers = self.cluster.containers
        started = [self._starts.get(c.stream, 0) <= t_to for c in containers]
        weights = np.array([c.weight if s else 0.0 for c, s in zip(containers, started, strict=True)])
        counts = self.rng.multinomial(lines, weights / weights.sum())
        for c, k in zip(containers, counts.tolist(), strict=True):
            pending = self._pending_lines.get(c.stream)
            if k or (pending and pending[0].ts_ns < t_to):
                self._container(c, k, t_from, t_to)

    def _container(self, c: Container, k: int, t_from: int, t_to: int) -> None:
        f = self.files[c.stream]
        ts = np.sort(self.rng.integers(t_from, t_to, k))
        r = render(c.profile, ts, self.rng, c, big_prob=1e-4)
        line_ts = ts[r.owner] + (np.arange(len(r.owner)) - np.searchsorted(r.owner, r.owner)) * 1000
        msgs, stderr, json = r.lines, r.stderr, r.json
        pending = self._pending_lines.get(c.stream, [])
        due = [i for i in pending if i.ts_ns < t_to]
        if due:
            del pending[: len(due)]
            all_ts = np.concatenate([line_ts, np.array([i.ts_ns for i in due], dtype=np.int64)])
            order = np.argsort(all_ts, kind="stable")
            msgs = [(msgs + [i.msg for i in due])[j] for j in order.tolist()]
            stderr = np.concatenate([stderr, np.array([i.stderr for i in due], dtype=bool)])[order]
            json = np.concatenate([json, np.array([i.json for i in due], dtype=bool)])[order]
            tags = [([""] * len(line_ts) + [i.tag for i in due])[j] for j in order.tolist()]
            for n, tag in enumerate(tags):
                if tag:
                    self._evidence(tag, f"{c.stream}:{f.next_seq + n}")
            line_ts = all_ts[order]
        line_ts = np.maximum.accumulate(line_ts)
        numbered = arrowtext.with_seq(arrowtext.to_arrow(msgs), json, c.stream, f.next_seq)
        times = arrowtext.rfc3339_nano(line_ts)
        if f.kind == "docker":
            texts = [
                x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in numbered.to_pylist()
            ]
            units = arrowtext.to_arrow(encode_docker(times.to_pylist(), stderr, texts))
        else:
            units = encode_cri(times, stderr, numbered, self.rng, self.o.partial_split_prob)
        self._append(f, units, len(units), t_to)

    def _tick_nodes(self, seconds: float, t_from: int, t_to: int) -> None:
        for node in self.cluster.nodes:
            f = self.files[f"n{node.index}.kubelet"]
            k = int(self.rng.poisson(self.live.node_rate * seconds))
            if not k:
                continue
            pods = [
                (f"{c.namespace}/{c.pod}", c.pod_uid, c.name)
                for c in self.cluster.containers
                if c.node is node
            ]
            pods = pods or [("kube-system/none", "0", "none")]
            ts = np.sort(self.rng.integers(t_from, t_to, k))
            msgs = arrowtext.to_arrow(system.kubelet_lines(ts, self.rng, pods, 2841 + node.index))
            units = arrowtext.join(
                arrowtext.with_seq(msgs, np.zeros(k, dtype=bool), f.stream, f.next_seq), "\n"
            )
            self._append(f, units, k, t_to)
            # the same kind of lines as journalctl -o json would export them (own stream, own content)
            j = self.files[f"n{node.index}.journal.kubelet"]
            jts = np.sort(self.rng.integers(t_from, t_to, k))
            text = add_seq(
                system.kubelet_lines(jts, self.rng, pods, 2841 + node.index),
                np.zeros(k, bool),
                j.stream,
                j.next_seq,
            )
            seq_ids = [f"{j.stream}:{n}" for n in range(j.next_seq, j.next_seq + k)]
            records = encode_journal(
                jts,
                np.arange(j.next_seq, j.next_seq + k, dtype=np.int64) + 0x1000,
                text,
                seq_ids,
                ["6"] * k,
                unit="kubelet.service",
                identifier="kubelet",
                pid=2841 + node.index,
                exe="/usr/bin/kubelet",
                hostname=node.name,
                boot_id=node.boot_id,
                machine_id=node.machine_id,
                boot_ns=self._boot_ns,
            )
            self._append(j, arrowtext.to_arrow(records), k, t_to)

    def _tick_audit(self, seconds: float, t_from: int, t_to: int) -> None:
        f = self.files["audit"]
        noise = background_events(self.cluster, t_from, t_to, self.live.audit_rate, self.rng)
        due = [r for r in self._pending_audit if r.ts_ns < t_to]
        del self._pending_audit[: len(due)]
        if len(noise) or due:
            units, _, positions = encode_bulk(noise, due, first=f.next_seq)
            for rec, pos in zip(due, positions.tolist(), strict=True):
                self._evidence(rec.tag, f"audit:{f.next_seq + pos}", rec.event["auditID"])
            self._append(f, units, len(units), t_to)

    # -- manifest ----------------------------------------------------------------------------------
    def _write_manifest(self) -> None:
        self.report.streams = {}
        for stream, f in self.files.items():
            files = [p for p, _, _ in f.rotated] + [f.path]
            self.report.streams[stream] = StreamInfo(
                f.layer,
                f.node,
                lines=f.next_seq,
                files=[p.relative_to(self.root).as_posix() for p in files],
                deleted=list(self._deleted.get(stream, [])),
                format=_FORMATS[f.kind],
            )
        for stats in self.report.layers.values():
            stats.files = stats.lines = stats.bytes = 0
        for info in self.report.streams.values():
            stats = self.report.layers[info.layer]
            stats.lines += info.lines
            for rel in info.files:
                p = self.root / rel
                if p.exists():
                    stats.files += 1
                    stats.bytes += p.stat().st_size
        tmp = self.root / (MANIFEST + ".tmp")
        tmp.write_bytes(orjson.dumps(self.report.manifest() | {"live": True}, option=orjson.OPT_INDENT_2))
        tmp.replace(self.root / MANIFEST)
        if self.report.attacks:
            happened = [a.to_json() for a in self.report.attacks if a.seq_ids]
            tmp = self.root / (TRUTH + ".tmp")
            tmp.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in happened))
            tmp.replace(self.root / TRUTH)

    def run(self, duration_s: float | None = None) -> SimulationReport:
        """Append until ``duration_s`` has passed or ``stop()`` is called; return what was written."""
        wall = time.time_ns()
        self._plan_attacks(wall)
        self._setup()
        started = time.monotonic()
        last = started
        last_manifest = started
        written = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if duration_s is not None and now - started >= duration_s:
                    break
                seconds = now - last
                if seconds > 0:
                    t_from, t_to = wall + int((last - started) * NS), wall + int((now - started) * NS) + 1
                    due = int(self.live.rate * (now - started) - written)
                    if due > 0:
                        self._tick_containers(due, t_from, t_to)
                        written += due
                    self._tick_nodes(seconds, t_from, t_to)
                    self._tick_audit(seconds, t_from, t_to)
                    last = now
                if now - last_manifest >= 1.0:
                    self._write_manifest()
                    last_manifest = now
                self._stop.wait(self.live.tick_s)
        finally:
            for f in self.files.values():
                f.close()
            self._write_manifest()
            self.report.seconds = time.monotonic() - started
        return self.report
