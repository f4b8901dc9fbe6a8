"""Retro-hunt over stored history (Parquet / any DuckDB relation) and the ``kubetrail hunt`` CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from kubetrail.detect.hunt import hunt
from kubetrail.detect.rules import load_rules
from kubetrail.detect.testing import batch_of

RULES = Path(__file__).resolve().parents[2] / "rules"


def history(tmp_path: Path) -> Path:
    events = [
        {
            "verb": "get",
            "user": {"username": "alice"},
            "objectRef": {"resource": "pods", "namespace": "p"},
            "requestReceivedTimestamp": f"2026-11-27T11:00:{i:02d}Z",
        }
        for i in range(50)
    ]
    events += [
        {
            "verb": "get",
            "user": {"username": "mallory"},
            "objectRef": {"resource": "secrets", "namespace": "p", "name": f"s{i}"},
            "requestReceivedTimestamp": f"2026-11-27T12:00:{i:02d}Z",
            "auditID": f"sec{i}",
        }
        for i in range(12)
    ]
    events.append(
        {
            "verb": "create",
            "user": {"username": "mallory"},
            "auditID": "exec1",
            "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "p"},
            "requestReceivedTimestamp": "2026-11-27T12:01:00Z",
        }
    )
    table = pa.Table.from_batches([batch_of(events)])
    path = tmp_path / "seg.parquet"
    pq.write_table(table.slice(0, 30), tmp_path / "seg0.parquet")
    pq.write_table(table.slice(30), path)
    return tmp_path


def test_hunt_finds_detections_and_correlations_across_chunks(tmp_path: Path) -> None:
    root = history(tmp_path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{root}/*.parquet')")
    seen: list[int] = []
    result = hunt(
        con, "logs", load_rules([RULES]), progress=lambda done, total, _: seen.append(total), chunk_rows=7
    )
    by_rule = {a.rule_title: a for a in result.alerts}
    assert by_rule["Kubernetes Exec Into Pod"].event_ids == ["exec1"]
    burst = by_rule["Kubernetes Burst Of Secret Reads"]
    assert burst.kind == "correlation" and burst.group_key == {"user.username": "mallory"}
    assert result.scanned_events == 63 and seen[-1] == 63
    assert not any("alice" in str(a.group_key) for a in result.alerts)


def test_hunt_cli_over_parquet(tmp_path: Path) -> None:
    from kubetrail.cli import app

    root = history(tmp_path)
    db = tmp_path / "alerts.sqlite"
    out = CliRunner().invoke(
        app,
        [
            "hunt",
            "--rules",
            str(RULES),
            "--since",
            "36500d",
            "--parquet",
            f"{root}/*.parquet",
            "--db",
            str(db),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "2 alerts" in out.output
    from kubetrail.detect.alerts import AlertStore

    assert any(a.rule_title == "Kubernetes Exec Into Pod" for a in AlertStore(db).list())


def test_hunt_cli_over_the_store(tmp_path: Path) -> None:
    """The same hunt over kubetrail.store's sandboxed ``logs`` view."""
    from kubetrail.cli import app
    from kubetrail.detect.alerts import AlertStore
    from kubetrail.store import Store

    store = Store(tmp_path / "store")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    exec_event = {
        "verb": "get",
        "user": {"username": "mallory"},
        "auditID": "x1",
        "requestReceivedTimestamp": now,
        "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "p"},
    }
    store.append(batch_of([exec_event]))
    store.flush()
    store.close()
    db = tmp_path / "alerts.sqlite"
    out = CliRunner().invoke(
        app,
        [
            "hunt",
            "--rules",
            str(RULES / "execution"),
            "--since",
            "1d",
            "--store",
            str(tmp_path / "store"),
            "--db",
            str(db),
        ],
    )
    assert out.exit_code == 0, out.output
    assert [a.event_ids for a in AlertStore(db).list()] == [["x1"]]
