from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from kubetrail.cli import app
from kubetrail.schema import TIMESTAMP, conform
from kubetrail.store import Store
from tests.store.conftest import T0, make_batch

runner = CliRunner()


def pod_lines(restart: int, n: int, start_ns: int) -> pa.RecordBatch:
    cols = {
        "@timestamp": pa.array([start_ns + i for i in range(n)], pa.int64()).cast(TIMESTAMP),
        "event.id": pa.array([f"r{restart}-{i}" for i in range(n)]),
        "event.dataset": pa.array(["container"] * n),
        "kubernetes.namespace": pa.array(["shop"] * n),
        "kubernetes.pod.name": pa.array(["cart-0"] * n),
        "kubernetes.container.name": pa.array(["app"] * n),
        "kubernetes.container.restart_count": pa.array([restart] * n, pa.int32()),
        "log.offset": pa.array([i * 10 for i in range(n)], pa.int64()),
        "message": pa.array([f"restart {restart} line {i}" for i in range(n)]),
    }
    return conform(cols, n)


def test_logs_current_and_previous(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as s:
        s.append(pod_lines(0, 3, T0))
        s.append(pod_lines(1, 2, T0 + 10**9))
        s.append(make_batch(50))
    res = runner.invoke(app, ["logs", "-n", "shop", "cart-0", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["restart 1 line 0", "restart 1 line 1"]
    res = runner.invoke(app, ["logs", "-n", "shop", "cart-0", "-p", "--data-dir", str(tmp_path)])
    assert res.output.splitlines() == [f"restart 0 line {i}" for i in range(3)]


def test_search_sql_and_retention_commands(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as s:
        s.append(make_batch(200))
    res = runner.invoke(
        app, ["search", "namespace:web", "--since", "", "--format", "json", "--data-dir", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert rows and all(r["kubernetes.namespace"] == "web" for r in rows)
    res = runner.invoke(app, ["search", "namespace:(web", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "KT-QUERY" in res.output
    res = runner.invoke(
        app, ["sql", "SELECT count(*) AS n FROM logs", "--format", "csv", "--data-dir", str(tmp_path)]
    )
    assert res.exit_code == 0 and res.output.splitlines()[-1] == "200"
    res = runner.invoke(app, ["retention", "hold", "case-1", "-n", "web", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and "hold 1 placed" in res.output
    res = runner.invoke(app, ["retention", "run", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and "deleted" in res.output
    res = runner.invoke(app, ["archive", "list", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0
