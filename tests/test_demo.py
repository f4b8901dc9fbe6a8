"""``kubetrail demo`` runs its steps in order: layers, ground truth, then the pipeline and its verdicts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubetrail.cli import app
from kubetrail.demo import STEPS


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """simulate -> agents -> server -> store -> hunt -> detections, with the printed verdicts."""
    result = CliRunner().invoke(app, ["demo", "--root", str(tmp_path), "--minutes", "1"], terminal_width=160)
    out = result.output
    assert result.exit_code == 0, out
    for layer in ("container", "node", "controlplane", "audit"):
        assert layer in out
    truth = [json.loads(line) for line in (tmp_path / "cluster/truth.jsonl").read_text().splitlines()]
    assert len(truth) == 14
    for attack in truth:
        assert attack["name"] in out
    titles = [title for title, _ in STEPS]
    assert titles[:2] == ["simulate a cluster", "attack ground truth"]
    assert "detections vs the ground truth" in titles
    seq = re.search(r"sequence ids: written=([\d,]+) stored=([\d,]+) lost=(\d+) duplicated=(\d+)", out)
    assert seq, out[-3000:]
    assert seq.group(1) == seq.group(2) and int(seq.group(1).replace(",", "")) > 5000
    assert (seq.group(3), seq.group(4)) == ("0", "0")
    verdict = re.search(
        r"attacks detected: (\d+)/(\d+); alerts: (\d+); alerts on background noise: (\d+)", out
    )
    assert verdict, out[-3000:]
    assert verdict.group(1) == verdict.group(2) == "14"
    assert "noise alerts by rule source: pack=0" in out  # the project's pack never fires on noise
    assert "NOT DETECTED" not in out
    for hunt in ("exec / attach into pods", "401/403 by source"):
        assert hunt in out
    assert "203.0.113.99" in out  # the 401/403 burst's source, found by the hunt
    assert "server exited with 0" in out
    assert "internal_error" not in out  # a parser that failed internally stored raw lines
    assert sorted(p.stem for p in tmp_path.glob("agents/*.yaml")) == sorted(
        p.name for p in (tmp_path / "cluster").iterdir() if p.is_dir()
    )  # one agent per simulated node


def test_simulate_command_prints_tables(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["simulate", "--root", str(tmp_path / "c"), "--nodes", "2", "--hours", "0.01", "--seed", "5"],
        terminal_width=160,
    )
    assert result.exit_code == 0, result.output
    assert "lines/s" in result.output and "crypto-miner" in result.output
    again = CliRunner().invoke(app, ["simulate", "--root", str(tmp_path / "c"), "--hours", "0.01", "--json"])
    assert json.loads(again.output)["layers"]["audit"]["lines"] > 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    refused = CliRunner().invoke(app, ["simulate", "--root", str(tmp_path / "other"), "--hours", "0.01"])
    assert refused.exit_code == 2


def test_a_failing_step_stops_the_demo_and_says_where(tmp_path: Path) -> None:
    from rich.console import Console

    from kubetrail.demo import DemoContext, Step, run_demo
    from kubetrail.demo.steps import DemoStepError
    from kubetrail.simulate import SimulationOptions

    ran: list[str] = []

    def broken(ctx: DemoContext) -> None:
        raise DemoStepError("the server is not installed")

    console = Console(record=True, width=120)
    ctx = DemoContext(root=tmp_path, console=console, options=SimulationOptions(hours=0.001))
    steps: list[tuple[str, Step]] = [
        ("first", lambda c: ran.append("first")),
        ("broken", broken),
        ("after", lambda c: ran.append("after")),
    ]
    run_demo(ctx, steps)
    assert ran == ["first"]
    assert ctx.results["failed"] == "2. broken"
    assert "step 2 (broken) failed: DemoStepError: the server is not installed" in console.export_text()
