"""Batch mode: write H hours of a cluster's logs as fast as possible (the benchmarks' load generator).

Each stream (a container, a node log, the audit log) is generated with its own generator seeded from
``(seed, crc32(stream id))``, rendered in bulk, numbered, encoded, cut into rotated files and written
with one write per file.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from kubetrail.simulate import arrowtext, system
from kubetrail.simulate.attacks import Injection, plan_attacks
from kubetrail.simulate.audit import POLICY_YAML, AuditRecord, encode_bulk
from kubetrail.simulate.cluster import Cluster, Container, Node, build_cluster
from kubetrail.simulate.noise import background_events
from kubetrail.simulate.options import SimulationOptions
from kubetrail.simulate.report import MANIFEST, LayerStats, SimulationReport, StreamInfo
from kubetrail.simulate.rotation import (
    WriteResult,
    write_audit_log,
    write_docker_log,
    write_kubelet_log,
    write_plain,
)
from kubetrail.simulate.timefmt import NS, parse_start
from kubetrail.simulate.workloads import PROFILES, big_line, render
from kubetrail.simulate.writers import add_seq, encode_cri, encode_docker, encode_journal

__all__ = ["container_log_paths", "prepare_root", "simulate_batch", "stream_rng"]


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """Independent generator per stream: adding a stream never changes another stream's output."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(stream.encode())])


def prepare_root(root: Path) -> None:
    """Create ``root``; an earlier simulation there (it has a manifest) is replaced, anything else refused."""
    if root.exists() and any(root.iterdir()):
        if not (root / MANIFEST).exists():
            raise FileExistsError(
                f"{root} is not empty and holds no simulation ({MANIFEST}); refusing to overwrite"
            )
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)


def container_log_paths(root: Path, c: Container, restart: int) -> tuple[Path, Path]:
    """(``var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log``, ``var/log/containers/...-<id>.log``)."""
    base = root / c.node.name / "var" / "log"
    pods = base / "pods" / f"{c.namespace}_{c.pod}_{c.pod_uid}" / c.name / f"{restart}.log"
    link = base / "containers" / f"{c.pod}_{c.namespace}_{c.name}-{c.ids[restart]}.log"
    return pods, link


def _symlink(link: Path, target: Path) -> None:
    """A relative link (kubelet writes absolute ones; relative keeps the tree movable)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


class _Batch:
    def __init__(self, root: Path, options: SimulationOptions) -> None:
        self.root = root
        self.o = options
        self.t0 = parse_start(options.start)
        self.t1 = self.t0 + int(options.hours * 3600 * NS)
        self.report = SimulationReport(root, options)
        self.cluster: Cluster = build_cluster(options, stream_rng(options.seed, "cluster"))
        self.injections: dict[str, list[Injection]] = {}
        self.attack_audit: list[AuditRecord] = []
        if options.attacks:
            plan = plan_attacks(self.cluster, self.t0, self.t1, stream_rng(options.seed, "attacks"))
            self.report.attacks = plan.attacks
            self.injections = plan.container_lines
            self.attack_audit = plan.audit
        self._add_big_lines()
        # rates are shared by weight among the containers that run from the start
        self.total_weight = sum(c.weight for c in self.cluster.containers if c.start_at == 0)

    def _add_big_lines(self) -> None:
        """At least one line over 16 KiB per node (random ones are rare), in its first daemon-set pod."""
        rng = stream_rng(self.o.seed, "big")
        for node in self.cluster.nodes:
            c = next(c for c in self.cluster.containers if c.node is node and not c.static)
            t = self.t0 + int((self.t1 - self.t0) * 0.5)
            self.injections.setdefault(c.stream, []).append(
                Injection(t, big_line(rng, False), True, False, "")
            )

    def _account(
        self, layer: str, stream: str, node: Node, fmt: str, result: WriteResult, offset: int = 0
    ) -> None:
        info = self.report.streams.setdefault(stream, StreamInfo(layer, node.name, format=fmt))
        stats = self.report.layers[layer]
        for f in result.files:
            info.files.append(f.path.relative_to(self.root).as_posix())
            stats.files += 1
            stats.lines += f.lines
            stats.bytes += f.bytes
        info.deleted.extend((a + offset, b + offset) for a, b in result.deleted_units)

    # -- containers --------------------------------------------------------------------------------
    def container(self, c: Container) -> None:
        rng = stream_rng(self.o.seed, c.stream)
        span = self.t1 - self.t0
        start = self.t0 + int(c.start_at * span)
        rate = self.o.lines_per_node_s * len(self.cluster.nodes) * c.weight / self.total_weight
        n = int(rng.poisson(rate * (self.t1 - start) / NS))
        ts = np.sort(rng.integers(start, self.t1, n))
        r = render(c.profile, ts, rng, c)
        pos = np.arange(len(r.owner)) - np.searchsorted(r.owner, r.owner)
        line_ts = ts[r.owner] + pos * 1000
        msgs, stderr, json = r.lines, r.stderr, r.json
        tags: list[str] | None = None
        inj = list(self.injections.get(c.stream, []))
        if c.restart_at is not None:
            inj += _crash(c, rng, self.t0 + int(c.restart_at * span))
        if inj:
            all_ts = np.concatenate([line_ts, np.array([i.ts_ns for i in inj], dtype=np.int64)])
            order = np.argsort(all_ts, kind="stable")
            msgs = _take(msgs + [i.msg for i in inj], order)
            stderr = np.concatenate([stderr, np.array([i.stderr for i in inj], dtype=bool)])[order]
            json = np.concatenate([json, np.array([i.json for i in inj], dtype=bool)])[order]
            tags = _take([""] * len(line_ts) + [i.tag for i in inj], order)
            line_ts = all_ts[order]
        line_ts = np.maximum.accumulate(line_ts) if len(line_ts) else line_ts
        numbered = arrowtext.with_seq(arrowtext.to_arrow(msgs), json, c.stream)
        if tags is not None:
            self._evidence(tags, c.stream)
        cut = len(msgs)
        if c.restart_at is not None:
            cut = int(np.searchsorted(line_ts, self.t0 + int(c.restart_at * span)))
        layer = "controlplane" if c.static else "container"
        bounds = [(0, cut), (cut, len(msgs))] if c.restart_at is not None else [(0, cut)]
        all_times = arrowtext.rfc3339_nano(line_ts)
        for restart, (a, b) in enumerate(bounds):
            times = all_times.slice(a, b - a)
            pods_path, link = container_log_paths(self.root, c, restart)
            if c.node.runtime == "docker":
                cid = c.ids[restart]
                real = self.root / c.node.name / "var/lib/docker/containers" / cid / f"{cid}-json.log"
                texts = [
                    x.decode("utf-8", "replace") if isinstance(x, bytes) else x
                    for x in numbered.slice(a, b - a).to_pylist()
                ]
                units = arrowtext.to_arrow(encode_docker(times.to_pylist(), stderr[a:b], texts))
                result = write_docker_log(real, units, self.o.rotate_bytes, self.o.rotate_keep)
                pods_path.parent.mkdir(parents=True, exist_ok=True)
                _symlink(pods_path, real)
                fmt = "docker"
            else:
                units = encode_cri(
                    times, stderr[a:b], numbered.slice(a, b - a), rng, self.o.partial_split_prob
                )
                result = write_kubelet_log(
                    pods_path, units, line_ts[a:b], self.o.rotate_bytes, self.o.rotate_keep
                )
                fmt = "cri"
            _symlink(link, pods_path)
            self._account(layer, c.stream, c.node, fmt, result, offset=a)
        self.report.streams[c.stream].lines = len(msgs)

    def _evidence(self, tags: Sequence[str], stream: str) -> None:
        by_id = {a.id: a for a in self.report.attacks}
        for i, tag in enumerate(tags):
            if tag in by_id:
                by_id[tag].seq_ids.append(f"{stream}:{i}")

    # -- node logs ---------------------------------------------------------------------------------
    def node_logs(self, node: Node) -> None:
        base = self.root / node.name
        # attack pods (start_at > 0) are left out: kubelet/containerd must not mention them before they exist
        mine = [c for c in self.cluster.containers if c.node is node and c.start_at == 0]
        pods = sorted({(f"{c.namespace}/{c.pod}", c.pod_uid, c.name) for c in mine})
        images = sorted({c.image for c in mine})
        boot_ns = self.t0 - 86400 * NS
        kubelet_pid, containerd_pid = 2841 + node.index, 612 + node.index
        made: dict[str, tuple[np.ndarray, list[str]]] = {}
        for name, rate in (
            ("kubelet", 2.0),
            ("containerd", 1.0),
            ("journal.kubelet", 2.0),
            ("journal.containerd", 1.0),
            ("syslog", 1.0),
        ):
            stream = f"n{node.index}.{name}"
            rng = stream_rng(self.o.seed, stream)
            ts = np.sort(rng.integers(self.t0, self.t1, int(rng.poisson(rate * (self.t1 - self.t0) / NS))))
            if name.endswith("kubelet"):
                msgs = system.kubelet_lines(ts, rng, pods, kubelet_pid)
            elif name.endswith("containerd"):
                msgs = system.containerd_lines(ts, rng, images)
                if name.startswith("journal"):  # a few messages with raw non-UTF-8 bytes
                    for i in np.flatnonzero(rng.random(len(msgs)) < 0.003).tolist():
                        msgs[i] += ' stdout="\udcff\udcfe\udc80 binary output"'
            else:
                msgs = system.syslog_lines(ts, rng, node.name)
            msgs = add_seq(msgs, np.zeros(len(msgs), dtype=bool), stream)
            made[name] = (ts, msgs)
            if not name.startswith("journal"):
                path = base / "var/log" / ("syslog" if name == "syslog" else f"{name}.log")
                fmt = "syslog" if name == "syslog" else ("klog" if name == "kubelet" else "logrus")
                units = arrowtext.join(arrowtext.to_arrow(msgs), "\n")
                self._account("node", stream, node, fmt, write_plain(path, units))
                self.report.streams[stream].lines = len(msgs)
        jk, jc = made["journal.kubelet"], made["journal.containerd"]
        merged = np.argsort(np.concatenate([jk[0], jc[0]]), kind="stable")
        seqnum = np.empty(len(merged), dtype=np.int64)
        seqnum[merged] = np.arange(len(merged)) + 0x1000
        seqnums = {"journal.kubelet": seqnum[: len(jk[0])], "journal.containerd": seqnum[len(jk[0]) :]}
        for name, (unit, ident, pid, exe) in {
            "journal.kubelet": ("kubelet.service", "kubelet", kubelet_pid, "/usr/bin/kubelet"),
            "journal.containerd": ("containerd.service", "containerd", containerd_pid, "/usr/bin/containerd"),
        }.items():
            stream = f"n{node.index}.{name}"
            ts, msgs = made[name]
            seq_ids = [f"{stream}:{i}" for i in range(len(msgs))]
            prio = [_priority(m) for m in msgs]
            units = encode_journal(
                ts,
                seqnums[name],
                msgs,
                seq_ids,
                prio,
                unit=unit,
                identifier=ident,
                pid=pid,
                exe=exe,
                hostname=node.name,
                boot_id=node.boot_id,
                machine_id=node.machine_id,
                boot_ns=boot_ns,
            )
            result = write_plain(base / "journal" / f"{ident}.json", arrowtext.to_arrow(units))
            self._account("node", stream, node, "journald", result)
            self.report.streams[stream].lines = len(msgs)

    # -- audit -------------------------------------------------------------------------------------
    def audit(self) -> None:
        cp = self.cluster.control_plane
        rng = stream_rng(self.o.seed, "audit")
        rate = self.o.audit_events_per_node_s * len(self.cluster.nodes)
        noise = background_events(self.cluster, self.t0, self.t1, rate, rng)
        units, ts, positions = encode_bulk(noise, self.attack_audit)
        by_id = {a.id: a for a in self.report.attacks}
        for rec, i in zip(self.attack_audit, positions.tolist(), strict=True):
            a = by_id[rec.tag]
            a.seq_ids.append(f"audit:{i}")
            if rec.event["auditID"] not in a.audit_ids:
                a.audit_ids.append(rec.event["auditID"])
        path = self.root / cp.name / "var/log/kubernetes/audit/audit.log"
        result = write_audit_log(
            path, units, ts, self.o.audit_rotate_bytes, self.o.audit_keep, self.o.audit_compress
        )
        self._account("audit", "audit", cp, "audit", result)
        self.report.streams["audit"].lines = len(units)
        policy = self.root / cp.name / "etc/kubernetes/audit-policy.yaml"
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text(POLICY_YAML)

    def run(self) -> SimulationReport:
        return self.run_parallel(1)

    def jobs(self) -> list[tuple[float, Job]]:
        """Every stream group as a job with a rough cost (lines x per-line cost), for balancing workers."""
        span_s = (self.t1 - self.t0) / NS
        per_weight = self.o.lines_per_node_s * len(self.cluster.nodes) * span_s / self.total_weight
        out: list[tuple[float, Job]] = [
            (c.weight * per_weight, ("container", i)) for i, c in enumerate(self.cluster.containers)
        ]
        out += [(7.0 * span_s * 2, ("node", i)) for i in range(len(self.cluster.nodes))]
        out.append((self.o.audit_events_per_node_s * len(self.cluster.nodes) * span_s * 3, ("audit", 0)))
        return out

    def run_jobs(self, jobs: list[Job]) -> None:
        for kind, i in jobs:
            if kind == "container":
                self.container(self.cluster.containers[i])
            elif kind == "node":
                self.node_logs(self.cluster.nodes[i])
            else:
                self.audit()

    def run_parallel(self, workers: int) -> SimulationReport:
        """Run every job here (``workers`` = 1) or spread over worker processes; the bytes are the same."""
        jobs = self.jobs()
        if workers <= 1:
            self.run_jobs([job for _, job in jobs])
        else:
            parts: list[list[Job]] = [[] for _ in range(workers)]
            load = [0.0] * workers
            for cost, job in sorted(jobs, key=lambda x: -x[0]):  # longest first to the least loaded
                k = load.index(min(load))
                parts[k].append(job)
                load[k] += cost
            ctx = multiprocessing.get_context("spawn")  # no fork: pyarrow's threads must not be forked
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                results = list(pool.map(_worker, [(self.root, self.o, part) for part in parts if part]))
            by_id = {a.id: a for a in self.report.attacks}
            for streams, layers, evidence in results:
                self.report.streams.update(streams)
                for name, stats in layers.items():
                    mine = self.report.layers[name]
                    mine.files, mine.lines, mine.bytes = (
                        mine.files + stats.files,
                        mine.lines + stats.lines,
                        mine.bytes + stats.bytes,
                    )
                for aid, (seq_ids, audit_ids) in evidence.items():
                    by_id[aid].seq_ids.extend(seq_ids)
                    by_id[aid].audit_ids.extend(x for x in audit_ids if x not in by_id[aid].audit_ids)
        for a in self.report.attacks:
            a.seq_ids.sort(key=lambda s: (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])))
        return self.report


Job = tuple[str, int]  # ("container", index) | ("node", index) | ("audit", 0)


def _worker(
    args: tuple[Path, SimulationOptions, list[Job]],
) -> tuple[dict[str, StreamInfo], dict[str, LayerStats], dict[str, tuple[list[str], list[str]]]]:
    """Rebuild the (deterministic) plan in a worker process and write its share of the streams."""
    root, options, jobs = args
    batch = _Batch(root, options)
    batch.run_jobs(jobs)
    evidence = {a.id: (a.seq_ids, a.audit_ids) for a in batch.report.attacks}
    return batch.report.streams, batch.report.layers, evidence


def _crash(c: Container, rng: np.random.Generator, restart_ns: int) -> list[Injection]:
    """What a container prints as it dies before its restart: its runtime's stack trace, or a fatal line."""
    profile = PROFILES[c.profile]
    t = restart_ns - 2_000_000
    if profile.multiline is not None:
        block = profile.multiline(np.array([t], dtype=np.int64), rng, c)
    else:
        block = [f"fatal: {c.name}: unrecoverable error, exiting with status 1"]
    return [Injection(t + k * 1000, line, True, False, "") for k, line in enumerate(block)]


def _take(items: list[str], order: np.ndarray) -> list[str]:
    return [items[k] for k in order.tolist()]


def _priority(msg: str) -> str:
    head = msg[:1]
    if head in ("E", "F") or "level=error" in msg[:80]:
        return "3"
    if head == "W" or "level=warning" in msg[:80]:
        return "4"
    return "6"


def simulate_batch(
    root: Path | str, options: SimulationOptions | None = None, workers: int = 1
) -> SimulationReport:
    """Write the simulated cluster under ``root`` and return what was written (also ``manifest.json``).

    ``workers`` > 1 spreads the streams over that many processes (same bytes, less wall time on idle
    cores; each worker pays ~1 s of imports).
    """
    started = time.perf_counter()
    root = Path(root)
    prepare_root(root)
    report = _Batch(root, options or SimulationOptions()).run_parallel(workers)
    report.write()
    report.seconds = time.perf_counter() - started
    return report
