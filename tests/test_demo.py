"""``kubetrail demo`` runs its steps in order and prints the layers and the ground truth."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kubetrail.cli import app
from kubetrail.demo import STEPS


def test_demo_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--root", str(tmp_path), "--minutes", "1"], terminal_width=160)
    assert result.exit_code == 0, result.output
    for layer in ("container", "node", "controlplane", "audit"):
        assert layer in result.output
    truth = [json.loads(line) for line in (tmp_path / "cluster/truth.jsonl").read_text().splitlines()]
    assert len(truth) == 14
    for attack in truth:
        assert attack["name"] in result.output
    assert [title for title, _ in STEPS][:2] == ["simulate a cluster", "attack ground truth"]


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
