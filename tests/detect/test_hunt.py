"""Retro-hunt over stored history (Parquet / any DuckDB relation) and the ``kubetrail hunt`` CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kubetrail.detect.alerts import Alert
from kubetrail.detect.engine import Engine
from kubetrail.detect.hunt import hunt, hunt_streaming
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


def test_hunt_over_the_store_gives_back_file_event_ids(tmp_path: Path) -> None:
    """Segments store a file line's id split (prefix + log.offset); hunt alerts name the whole id."""
    from kubetrail.cli import app
    from kubetrail.detect.alerts import AlertStore
    from kubetrail.store import Store

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    exec_event = {
        "verb": "create",
        "user": {"username": "mallory"},
        "auditID": "a1",
        "requestReceivedTimestamp": now,
        "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "p"},
    }
    batch = batch_of([exec_event])
    file_id = "0123456789abcdef0123-4096"
    batch = batch.set_column(
        batch.schema.get_field_index("event.id"), "event.id", pa.array([file_id], pa.string())
    )
    batch = batch.set_column(
        batch.schema.get_field_index("log.offset"), "log.offset", pa.array([4096], pa.int64())
    )
    store = Store(tmp_path / "store")
    store.append(batch)
    store.flush()
    store.close()
    db = tmp_path / "alerts.sqlite"
    args = ["hunt", "--rules", str(RULES / "execution"), "--since", "1d"]
    out = CliRunner().invoke(app, [*args, "--store", str(tmp_path / "store"), "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert [a.event_ids for a in AlertStore(db).list()] == [[file_id]]


def _pack_events() -> list[dict[str, object]]:
    """Every true and false test event of the pack (correlation sequences flattened)."""
    import yaml

    events: list[dict[str, object]] = []
    for path in sorted((RULES.parent / "tests" / "detect" / "rules").glob("*.yml")):
        spec = yaml.safe_load(path.read_text())
        for item in [*(spec.get("match") or []), *(spec.get("no_match") or [])]:
            events += item if isinstance(item, list) else [item]
    return events


def _alert_facts(alerts: list[Alert]) -> list[tuple[object, ...]]:
    return sorted(
        (a.rule_id, a.kind, a.key_hash(), a.count, a.first_seen, a.last_seen, tuple(sorted(a.event_ids)))
        for a in alerts
    )


def test_hunt_equals_streaming_evaluation_on_the_same_rows(tmp_path: Path) -> None:
    """The pushed-down candidate query + engine gives exactly what streaming every row gives."""
    events = _pack_events()
    table = pa.Table.from_batches([batch_of(events)])
    assert len(set(table.column("event.id").to_pylist())) == table.num_rows
    # distinct times (many test events share one): both paths then see one unambiguous order
    ts = pc.add(table.column("@timestamp"), pa.array(range(table.num_rows), pa.duration("us")))
    table = table.set_column(table.column_names.index("@timestamp"), "@timestamp", ts)
    table = table.take(pc.sort_indices(table, [("@timestamp", "ascending")]))
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), tmp_path / "a.parquet")
    pq.write_table(table.slice(half), tmp_path / "b.parquet")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{tmp_path}/*.parquet')")
    rules = load_rules([RULES])
    pushed = hunt(con, "logs", rules, chunk_rows=50)
    streamed = hunt_streaming(con, "logs", rules, chunk_rows=100_000)
    assert pushed.errors == streamed.errors == []
    assert pushed.matched_events == streamed.matched_events > 50
    assert _alert_facts(pushed.alerts) == _alert_facts(streamed.alerts)
    assert {a.kind for a in pushed.alerts} == {"detection", "correlation"}
    # and the per-rule matches equal the streaming engine's over the whole batch at once
    engine = Engine(rules)
    ids = table.column("event.id").to_pylist()
    expected = {(m.rule.id, ids[i]) for m in engine.evaluate(table).matches if m.rule.alert for i in m.rows}
    engine.close()
    got = {(a.rule_id, i) for a in pushed.alerts if a.kind == "detection" for i in a.event_ids}
    assert got == expected


def test_hunt_reads_only_the_relations_of_rule_datasets(tmp_path: Path) -> None:
    """A mapping dataset -> relation: datasets without a relation are not scanned at all."""
    root = history(tmp_path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW audit_only AS SELECT * FROM read_parquet('{root}/*.parquet')")
    result = hunt(con, {"audit": "audit_only"}, load_rules([RULES]))
    assert result.scanned_events == 63
    assert any(a.rule_title == "Kubernetes Exec Into Pod" for a in result.alerts)
    assert hunt(con, {"container": "audit_only"}, load_rules([RULES])).alerts == []


def test_hunt_falls_back_to_streaming_when_the_query_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rule whose SQL fails on some row must not lose the hunt: the streaming path takes over."""
    root = history(tmp_path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{root}/*.parquet')")
    ruleset = load_rules([RULES])
    broken = next(r for r in ruleset.rules if r.name == "k8s_pod_attach")
    broken.sql = f'CAST("kubernetes.audit.verb" AS INTEGER) = 1 AND {broken.sql}'
    result = hunt(con, "logs", ruleset)
    assert "hunt query failed" in caplog.text and "Conversion Error" in caplog.text
    titles = {a.rule_title for a in result.alerts}
    assert {"Kubernetes Exec Into Pod", "Kubernetes Burst Of Secret Reads"} <= titles
    assert _alert_facts(result.alerts) == _alert_facts(hunt_streaming(con, "logs", ruleset).alerts)


def test_store_relations_read_only_segments_holding_the_dataset(tmp_path: Path) -> None:
    from kubetrail.detect.hunt import store_relations

    audit = batch_of([{"verb": "get", "objectRef": {"resource": "pods"}, "auditID": "a1"}])
    container = batch_of([{"container_log": {"message": "hello"}}])
    pq.write_table(pa.Table.from_batches([audit]), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_batches([container]), tmp_path / "c.parquet")
    files = [str(tmp_path / "a.parquet"), str(tmp_path / "c.parquet"), str(tmp_path / "u.parquet")]
    pq.write_table(pa.Table.from_batches([container]), files[2])  # catalog without datasets: read
    con = duckdb.connect()
    con.register("__tail_logs", pa.Table.from_batches([audit]).slice(0, 0))
    known = {files[0]: ["audit"], files[1]: ["container"]}
    views = store_relations(con, load_rules([RULES]), files, known, "")
    assert set(views) == {"audit", "container", "node"}
    count = 'SELECT count(*), list(DISTINCT "event.dataset" ORDER BY "event.dataset") FROM {}'
    assert con.sql(count.format(views["audit"])).fetchall() == [(2, ["audit", "container"])]
    assert con.sql(count.format(views["container"])).fetchall() == [(2, ["container"])]
    assert con.sql(count.format(views["node"])).fetchall() == [(1, ["container"])]
