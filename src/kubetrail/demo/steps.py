"""The demo's pipeline steps: server -> agents -> store -> hunting -> detections vs the ground truth.

They run after ``step_simulate`` and ``step_ground_truth`` (``kubetrail.demo``) with real processes:
``kubetrail server`` with a configuration written into the demo directory (agent receiver on a free
127.0.0.1 port with a hashed token, WAL + store + alert database in the demo directory, the ``detect``
transform with the project's rule pack and, when present, SigmaHQ's Kubernetes audit rules), and one
``kubetrail agent`` per simulated node reading that node's tree from its head. Hunting queries go
through the server's search API with a hunter token, like a hunter's client would. After the graceful
stop the store is counted by sequence id (lost / duplicated) and every alert is attributed to the
attacks of ``truth.jsonl`` or to background noise (``kubetrail.demo.score``).

Each step records its results in ``ctx.results`` and raises :class:`DemoStepError` with a clear
message when a part is missing or misbehaves; ``kubetrail.demo`` prints it and skips the steps that
depend on it.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from rich.table import Table

if TYPE_CHECKING:
    from kubetrail.demo import DemoContext

__all__ = [
    "PIPELINE_STEPS",
    "DemoStepError",
    "step_agents",
    "step_detections",
    "step_hunt",
    "step_server",
    "step_stop_server",
    "step_stored",
]

REPO = Path(__file__).resolve().parents[3]
SIGMAHQ_DIR = REPO.parent / "shared" / "data" / "sigma-kubernetes-audit"
# globs of one node's tree (relative to it) per agent source; the simulator's journal is written as
# `journalctl -o json` exports, which the agent tails as source journald (journal_export_globs)
NODE_SOURCES = {
    "container_globs": ["var/log/pods/*/*/*.log"],
    "audit_globs": ["var/log/kubernetes/audit/audit.log"],
    "file_globs": ["var/log/syslog", "var/log/kubelet.log", "var/log/containerd.log"],
    "journal_export_globs": ["journal/*.json"],
}
HUNTS = (
    (
        "exec / attach into pods",
        "objectRef.resource:pods objectRef.subresource:(exec OR attach) "
        "| stats count() by user.username, objectRef.namespace, objectRef.subresource, verb",
    ),
    (
        "secrets read across namespaces",
        "objectRef.resource:secrets verb:(list OR get) | stats count() dc(objectRef.namespace) as namespaces "
        "by user.username | where namespaces > 3 | sort -namespaces",
    ),
    (
        "anonymous requests (health probes excluded)",
        "user.username:system\\:anonymous -requestURI:(/livez OR /readyz OR /healthz) "
        "| stats count() by requestURI, sourceIPs",
    ),
    (
        "401/403 by source",
        "responseStatus.code:(401 OR 403) | stats count() as denied dc(user.username) as users by sourceIPs "
        "| sort -denied | head 10",
    ),
)


class DemoStepError(RuntimeError):
    """A step cannot run (a part is missing, a process failed); the message says what to do."""


@dataclass
class ServerRun:
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    data_dir: Path
    api_url: str
    agent_url: str
    agent_token: str
    hunter_token: str
    alerts_db: Path
    rule_dirs: list[str]


@dataclass
class AgentRun:
    node: str
    proc: subprocess.Popen[bytes]
    metrics_url: str
    log: Path
    expected_bytes: int
    shipped_bytes: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _tokens(root: Path) -> tuple[str, str, Path]:
    from kubetrail.server.auth import generate_token, hash_token

    agent, hunter = generate_token(), generate_token()
    path = root / "tokens.yaml"
    entries = [
        {"name": "demo-agents", "hash": hash_token(agent), "roles": ["agent"]},
        {"name": "demo-hunter", "hash": hash_token(hunter), "roles": ["hunter"]},
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    path.chmod(0o600)
    return agent, hunter, path


def server_config(
    root: Path, api_port: int, agent_port: int, tokens: Path
) -> tuple[dict[str, Any], list[str]]:
    """The demo's ``kubetrail.yaml``: one agent receiver, detection, everything under ``root``."""
    rules = [str(REPO / "rules")] if (REPO / "rules").is_dir() else []
    if SIGMAHQ_DIR.is_dir():
        rules.append(str(SIGMAHQ_DIR))
    config: dict[str, Any] = {
        "cluster": {"name": "demo"},
        "data_dir": str(root / "server"),
        "server": {
            "listen": f"127.0.0.1:{api_port}",
            "tokens_file": str(tokens),
            "store_flush_interval_secs": 2,
        },
        "receivers": {"agent": {"type": "agent", "listen": f"127.0.0.1:{agent_port}"}},
    }
    if rules:
        config["transforms"] = {
            "detect": {"type": "detect", "rules": rules, "alerts_db": str(root / "alerts.sqlite")}
        }
    return config, rules


def _wait(check: Any, timeout: float, what: str, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DemoStepError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        with _quiet():
            result = check()
            if result:
                return result
        time.sleep(0.2)
    raise DemoStepError(f"{what}: not done after {timeout:.0f} s (log: {log})")


class _quiet:
    """Connection errors while a process starts are expected: the check just says "not yet"."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, (httpx.HTTPError, OSError, ValueError))


def step_server(ctx: DemoContext) -> None:
    """Start ``kubetrail server`` (agent receiver, WAL, parsing, detection, store) and wait until ready."""
    try:
        import kubetrail.server.app  # noqa: F401
    except ImportError as exc:
        raise DemoStepError(f"the server is not installed ({exc})") from None
    root = ctx.root.resolve()
    # an earlier demo's store, checkpoints and alerts would skew the counts
    for owned in (root / "server", root / "agents"):
        shutil.rmtree(owned, ignore_errors=True)
    for alerts_file in root.glob("alerts.sqlite*"):
        alerts_file.unlink()
    api_port, agent_port = free_port(), free_port()
    agent_token, hunter_token, tokens = _tokens(root)
    config, rules = server_config(root, api_port, agent_port, tokens)
    path = root / "kubetrail-demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _python("kubetrail", "server", "-c", str(path), "--log-level", "warning"),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    run = ServerRun(
        proc, path, log, root / "server", f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{agent_port}",
        agent_token, hunter_token, root / "alerts.sqlite", rules,
    )  # fmt: skip
    ctx.results["server"] = run
    _wait(lambda: httpx.get(f"{run.api_url}/readyz", timeout=2).status_code == 200, 90, "server", proc, log)
    ctx.console.print(f"server ready: API {run.api_url}, agent receiver {run.agent_url}, config {path}")
    for rule_dir in rules:
        ctx.console.print(f"  rules: {rule_dir}")
    if not SIGMAHQ_DIR.is_dir():
        ctx.console.print(f"  [dim]SigmaHQ rules not found at {SIGMAHQ_DIR}: the project's pack only[/dim]")


def _node_bytes(node_root: Path) -> int:
    """Bytes the agent will ship: every live and plain rotated file its globs reach (gzip is never read)."""
    total = 0
    patterns = [g for globs in NODE_SOURCES.values() for g in globs]
    seen: set[Path] = set()
    for pattern in patterns:
        for base in node_root.glob(pattern):
            for path in (base, *base.parent.glob(base.name + ".*"), *base.parent.glob(base.stem + "-*.log")):
                if path in seen or path.suffix == ".gz" or not path.is_file():
                    continue
                seen.add(path)
                total += path.stat().st_size
    return total


def _agent_config(ctx: DemoContext, node: str, server: ServerRun, metrics_port: int) -> Path:
    node_root = ctx.cluster_root.resolve() / node
    cfg = {
        "node_name": node,
        "data_dir": str(ctx.root.resolve() / "agents" / node),
        "read_from": "head",
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "poll_interval_secs": 0.1,
        "rescan_interval_secs": 2.0,
        "rotate_grace_secs": 1.0,
        "checkpoint_interval_secs": 0.2,
        "log_level": "warning",
        "server": {"url": server.agent_url, "token": server.agent_token},
        "batch": {"flush_interval_secs": 0.1},
        "sources": {
            **{k: [str(node_root / g) for g in v] for k, v in NODE_SOURCES.items()},
            "journald": {"enabled": False},
        },
        "kubernetes": {"enabled": "false"},
    }
    path = ctx.root.resolve() / "agents" / f"{node}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"agent": cfg}, sort_keys=False))
    return path


def _metrics(url: str) -> dict[str, float]:
    """Prometheus text -> ``{metric name: sum over its label sets}``."""
    out: dict[str, float] = {}
    for line in httpx.get(url, timeout=2).text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + float(value)
    return out


def step_agents(ctx: DemoContext) -> None:
    """One node agent per simulated node, from the head of every file until every byte is acknowledged."""
    server: ServerRun | None = ctx.results.get("server")
    if server is None:
        raise DemoStepError("no server is running")
    nodes = sorted(p.name for p in ctx.cluster_root.iterdir() if p.is_dir())
    agents: list[AgentRun] = []
    ctx.results["agents"] = agents
    for node in nodes:
        port = free_port()
        cfg = _agent_config(ctx, node, server, port)
        log = cfg.with_suffix(".log")
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _python("kubetrail.agent", "-c", str(cfg)), stdout=out, stderr=subprocess.STDOUT
            )
        agents.append(
            AgentRun(
                node, proc, f"http://127.0.0.1:{port}/metrics", log, _node_bytes(ctx.cluster_root / node)
            )
        )
    started = time.monotonic()

    def all_shipped() -> bool:
        done = True
        for agent in agents:
            agent.metrics = _metrics(agent.metrics_url)
            agent.shipped_bytes = agent.metrics.get("kubetrail_agent_bytes_shipped_total", 0.0)
            inflight = agent.metrics.get("kubetrail_agent_inflight_bytes", 1.0)
            done = done and agent.shipped_bytes >= agent.expected_bytes and inflight == 0
        return done

    try:
        for agent in agents:
            _wait(lambda a=agent: _metrics(a.metrics_url), 60, f"agent {agent.node}", agent.proc, agent.log)
        _wait(all_shipped, 240, "agents shipping", agents[0].proc, agents[0].log)
    finally:
        for agent in agents:
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.proc.wait(30)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
    seconds = time.monotonic() - started
    table = Table("node", "bytes on disk", "shipped + acknowledged", "requests", "retries", "exit")
    for a in agents:
        requests = a.metrics.get("kubetrail_agent_requests_total", 0)
        retries = a.metrics.get("kubetrail_agent_retries_total", 0)
        table.add_row(a.node, f"{a.expected_bytes:,}", f"{a.shipped_bytes:,.0f}", f"{requests:,.0f}",
                      f"{retries:,.0f}", str(a.proc.returncode))  # fmt: skip
    ctx.console.print(table)
    total = sum(a.expected_bytes for a in agents)
    ctx.console.print(
        f"{total / 1e6:,.1f} MB shipped in {seconds:.1f} s ({total / 1e6 / max(seconds, 1e-9):,.1f} MB/s)"
    )
    ctx.console.print(
        "[dim]journald: the simulator's `journalctl -o json` exports (journal/*.json) are shipped through "
        "the agent's journal_export_globs as source journald (the live journalctl source is off)[/dim]"
    )


def search(server: ServerRun, query: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The server's ``/api/v1/search`` with the hunter token; NDJSON rows (an error row raises)."""
    response = httpx.post(
        f"{server.api_url}/api/v1/search",
        json={"q": query, "since": None, "limit": limit},
        headers={"Authorization": f"Bearer {server.hunter_token}"},
        timeout=120,
    )
    if response.status_code != 200:
        raise DemoStepError(f"search {query!r}: HTTP {response.status_code} {response.text[:500]}")
    rows = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    for row in rows:
        if "error" in row and len(row) == 1:
            raise DemoStepError(f"search {query!r}: {row['error']}")
    return rows


def _drained(server: ServerRun) -> bool:
    return _metrics(f"{server.api_url}/metrics").get("kubetrail_queue_bytes", 1.0) == 0.0


def _rows_table(rows: list[dict[str, Any]], title: str = "") -> Table:
    columns = list(rows[0]) if rows else ["(no rows)"]
    table = Table(*columns, title=title or None)
    for row in rows:
        table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
    return table


def step_stored(ctx: DemoContext) -> None:
    """What the server stored, per dataset (after its pipeline drained), through the search API."""
    server: ServerRun | None = ctx.results.get("server")
    if server is None:
        raise DemoStepError("no server is running")
    _wait(lambda: _drained(server), 180, "server pipeline drain", server.proc, server.log)
    rows = search(server, "* | stats count() by event.dataset")
    ctx.console.print(_rows_table(rows, "stored events per dataset (kubetrail search)"))
    ctx.results["stored"] = rows
    flagged = search(server, "_exists_:event.parse_error | stats count() by event.dataset, event.parse_error")
    ctx.results["parse_errors"] = flagged
    if flagged:  # stored raw with a reason code, never dropped: show them so a regression is visible
        ctx.console.print(_rows_table(flagged, "stored with a parse error (raw line kept)"))
        if any(r.get("event.parse_error") == "unknown_format" for r in flagged):
            ctx.console.print(
                "[dim]unknown_format: the agent ships file_globs (kubelet.log, containerd.log, syslog) as "
                "source `file` with no format, which the server's format choice has no parser for[/dim]"
            )


def step_hunt(ctx: DemoContext) -> None:
    """A few hunting queries (docs/query.md) against the running server."""
    server: ServerRun | None = ctx.results.get("server")
    if server is None:
        raise DemoStepError("no server is running")
    for title, query in HUNTS:
        ctx.console.print(f"[bold]{title}[/bold]: [cyan]{query}[/cyan]")
        rows = search(server, query, limit=20)
        ctx.console.print(_rows_table(rows))


def step_stop_server(ctx: DemoContext) -> None:
    """Graceful stop: stop accepting, drain, flush the store, checkpoint the WAL, exit 0."""
    server: ServerRun | None = ctx.results.get("server")
    if server is None:
        raise DemoStepError("no server is running")
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(120)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            raise DemoStepError("the server did not stop within 120 s (killed)") from None
    ctx.console.print(f"server exited with {server.proc.returncode} (log: {server.log})")
    if server.proc.returncode != 0:
        raise DemoStepError(f"the server exited with {server.proc.returncode}: see {server.log}")


def stop_all(ctx: DemoContext) -> None:
    """Never leave processes behind, whatever step failed."""
    for agent in ctx.results.get("agents", []):
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()
    server: ServerRun | None = ctx.results.get("server")
    if server is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(60)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


# the verdict steps read what the processes above left behind (they import this module's types)
from kubetrail.demo.verdict import step_detections, step_lost_duplicated  # noqa: E402

PIPELINE_STEPS = [
    ("kubetrail server", step_server),
    ("node agents ship every node's logs", step_agents),
    ("stored per dataset", step_stored),
    ("hunting queries", step_hunt),
    ("graceful server stop", step_stop_server),
    ("lost and duplicated events (sequence ids)", step_lost_duplicated),
    ("detections vs the ground truth", step_detections),
]
