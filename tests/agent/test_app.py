"""The agent as a process: Kubernetes metadata on chunks, exclusions, rate-limit summary events,
/metrics and /healthz, JSON logs, SIGTERM drain; config loading; docs that list every option and metric."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kubetrail.agent.config import AgentConfig, load_agent_config
from kubetrail.agent.metrics import Metrics
from kubetrail.errors import ConfigError
from tests.agent.conftest import REPO, AgentProcess, Receiver, agent_config, free_port, tally, wait_port
from tests.agent.kube_api import FakeKubeAPI, namespace, pod


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("".join(f"2026-01-01T00:00:00.000000000Z stdout F {line}\n" for line in lines))


@pytest.mark.integration
def test_agent_process_with_metadata_exclusions_ratelimit_and_metrics(tmp_path: Path) -> None:
    api = FakeKubeAPI()
    api.add("namespaces", namespace("shop", labels={"team": "payments"}))
    api.add("namespaces", namespace("quiet", annotations={"kubetrail.io/exclude": "true"}))
    api.add("pods", pod("web-1", "u1", "shop", labels={"app": "web"}, owner=("DaemonSet", "web")))
    api.add("pods", pod("noisy", "u2", "quiet"))
    api.add("pods", pod("spammer", "u3", "shop"))
    api.put_single(
        "/api/v1/nodes/node-a", {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-a"}}
    )
    api.start()
    receiver = Receiver(tmp_path)
    receiver.start()
    metrics_port = free_port()
    pods = tmp_path / "pods"
    _write(pods / "shop_web-1_u1" / "app" / "0.log", [f"kt_seq=web:{i}" for i in range(1, 11)])
    _write(pods / "quiet_noisy_u2" / "app" / "0.log", [f"kt_seq=noisy:{i}" for i in range(1, 11)])
    cfg = agent_config(
        tmp_path,
        receiver.url,
        metrics_listen=f"127.0.0.1:{metrics_port}",
        kubernetes={
            "enabled": "true",
            "api_url": f"http://127.0.0.1:{api.port}",
            "token_file": str(tmp_path / "none"),
        },
        rate_limit={"lines_per_sec": 1, "burst_lines": 100},
    )
    agent = AgentProcess(tmp_path, cfg)
    try:
        time.sleep(0.1)
        agent.start()
        wait_port(metrics_port)
        time.sleep(1.0)  # metadata listed before the spammer starts
        _write(pods / "shop_spammer_u3" / "app" / "0.log", [f"kt_seq=spam:{i}" for i in range(1, 1001)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = tally(receiver.out)
            if sum(1 for s, _ in result.seq if s == "web") == 10 and any(s == "spam" for s, _ in result.seq):
                break
            time.sleep(0.2)
        status, body = _get(f"http://127.0.0.1:{metrics_port}/healthz")
        assert status == 200 and json.loads(body)["ok"] is True
        status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert re.search(rb"kubetrail_agent_bytes_shipped_total \d", text)
        assert b"kubetrail_agent_kube_metadata 1.0" in text
        assert _get(f"http://127.0.0.1:{metrics_port}/nope")[0] == 404
        # the summary event is emitted every 10 s; stop the agent (SIGTERM flushes it)
        assert agent.terminate() == 0
    finally:
        if agent.proc is not None:
            agent.kill9()
        receiver.stop()
        api.stop()
    result = tally(receiver.out)
    web = str(pods / "shop_web-1_u1" / "app" / "0.log")
    meta = result.metadata[web]
    assert json.loads(meta["kubernetes.labels"]) == {"app": "web"}
    assert meta["kubernetes.owner.kind"] == "DaemonSet" and meta["container.image.name"] == "nginx:1.27"
    assert json.loads(meta["kubernetes.namespace_labels"]) == {"team": "payments"}
    assert meta["kubernetes.pod.uid"] == "u1" and meta["host.name"] == "node-a"
    assert sorted(n for s, n in result.seq if s == "web") == list(range(1, 11))
    assert not any(s == "noisy" for s, _ in result.seq)  # excluded namespace
    spam = sorted(n for s, n in result.seq if s == "spam")
    assert 100 <= len(spam) < 1000 and spam == list(range(1, len(spam) + 1))
    summaries = [line for line in result.events.values() if b'"rate-limited"' in line]
    assert summaries, "rate-limit summary event missing"
    summary = json.loads(summaries[0])
    assert summary["kubetrail.dropped_lines"] == 1000 - len(spam)
    assert summary["kubernetes.pod.name"] == "spammer"
    logs = [json.loads(line) for line in agent.log.read_text().splitlines() if line.startswith("{")]
    assert any(entry["message"] == "agent started" and entry["node"] == "node-a" for entry in logs)


def test_config_env_overrides_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "kubetrail.yaml"
    path.write_text("agent:\n  node_name: n9\n  batch: {compression: lz4}\n")
    cfg = load_agent_config(
        path, environ={"KUBETRAIL_AGENT__SERVER__URL": "https://x:1", "KUBETRAIL_AGENT__READ_FROM": "tail"}
    )
    assert (cfg.node_name, cfg.batch.compression, cfg.server.url, cfg.read_from) == (
        "n9",
        "lz4",
        "https://x:1",
        "tail",
    )
    path.write_text("agent:\n  batch: {compression: gzip}\n  bogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_agent_config(path, environ={})
    assert "agent.batch.compression" in str(err.value) and "agent.bogus" in str(err.value)
    done = subprocess.run(
        [sys.executable, "-m", "kubetrail.agent", "-c", str(path)], capture_output=True, cwd=REPO
    )
    assert done.returncode == 2 and b"agent.bogus" in done.stderr


def test_agent_section_is_registered_for_config_check() -> None:
    import typer

    from kubetrail.agent.cli import register
    from kubetrail.config import validate_config

    register(typer.Typer())
    cfg, _ = validate_config({"agent": {"node_name": "n2"}})
    assert cfg.section("agent").node_name == "n2"
    with pytest.raises(ConfigError):
        validate_config({"agent": {"read_from": "middle"}})


def test_agent_does_not_import_pyarrow() -> None:
    code = "import sys, kubetrail.agent.app, kubetrail.agent.journald; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, cwd=REPO)
    assert out.stdout.strip() == b"False"


def test_docs_list_every_option_and_metric() -> None:
    doc = (REPO / "docs" / "agent.md").read_text()
    from pydantic import BaseModel

    def options(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out += options(ann, prefix + name + ".")
            else:
                out.append(prefix + name)
        return out

    missing = [o for o in options(AgentConfig) if f"`{o}`" not in doc]
    assert not missing, f"undocumented options: {missing}"
    names = [c.name + ("_total" if c.type == "counter" else "") for c in Metrics().registry.collect()]
    assert not [n for n in names if f"`{n}`" not in doc]


def test_reading_pauses_at_the_inflight_bound_while_the_server_is_away(tmp_path: Path) -> None:
    """Unreachable server: memory stays bounded (the file is the buffer) and rotated bytes are at risk."""
    import asyncio

    from kubetrail.agent.app import Agent

    pods = tmp_path / "pods"
    log = pods / "ns_p_u" / "app" / "0.log"
    _write(log, [f"kt_seq=big:{i} " + "x" * 200 for i in range(150_000)])  # ~36 MB
    cfg = AgentConfig.model_validate(
        agent_config(
            tmp_path,
            f"http://127.0.0.1:{free_port()}",
            batch={"max_inflight_bytes": 4 << 20},
            shutdown_timeout_secs=0.5,
        )
    )

    async def scenario() -> tuple[int, int, int, float]:
        agent = Agent(cfg)
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(1.5)
        log.rename(log.with_name("0.log.20260101-000000"))  # rotated while unshipped: at risk
        _write(log, ["kt_seq=big:new"])
        await asyncio.sleep(1.5)
        agent._stats()
        tail = next(iter(agent.harvester.tails.values()))
        result = (
            agent.shipper.inflight_bytes,
            tail.read_offset,
            int(agent.metrics.bytes_at_risk._value.get()),
            agent.metrics.server_up._value.get(),
        )
        agent.stopping.set()
        await asyncio.wait_for(task, 30)
        return result

    inflight, read, at_risk, up = asyncio.run(scenario())
    assert inflight <= (4 << 20) + cfg.read_bytes
    assert read < 8 << 20  # stopped reading: the rest waits on disk
    assert at_risk > 30 << 20
    assert up == 0
